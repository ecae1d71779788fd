//! SIGHUP: a new process takes over the listening sockets, and not one connection is lost.
//!
//! Closing a listening socket drops every connection queued on it, SO_REUSEPORT or not (the
//! queue belongs to the socket). So a restart that loses nothing never closes a listener: the
//! old process hands the very same sockets to the new one, as nginx does on its binary upgrade.
//!
//! ```text
//!   old process                                new process
//!   SIGHUP
//!   spawn BINARY ARGS with the listeners ──────▶ REACTOR_HTTPD_LISTENERS=fd,fd,...
//!     (FD_CLOEXEC cleared on them alone)         takes the sockets instead of binding,
//!                                                builds its loops, polls
//!   with --tls-self-signed: its certificate ─▶ serves that certificate, not a new one
//!     and key, on the readiness socket
//!   ◀─────────────────── one byte on the readiness socket (REACTOR_HTTPD_READY)
//!   stop accepting (close its copies only:
//!     the sockets and their queues live on
//!     in the new process), finish requests in
//!     flight, answer idle connections' next
//!     request with `Connection: close`, exit 0
//! ```
//!
//! If the new process fails before it is ready (it cannot be executed, it rejects its flags, it
//! dies, or it says nothing for [`READY_WITHIN`]), the readiness socket reports the end of the
//! stream or the time runs out: the old process says so in one line and serves on, as before.
//!
//! The binary is the path this process was started from (`argv[0]`, resolved against the working
//! directory or `PATH` at start), so a binary replaced on disk since (renamed over, as package
//! managers do, or a `current` link moved to a new release) is the one that runs; not
//! `/proc/self/exe`, which names the old file even after it was replaced, and the target of any
//! link.
//!
//! Nothing here runs on a thread of its own: the driver that takes the signals (the reactor's
//! first loop, the fork mode's parent, the blocking modes' signal thread) starts the upgrade
//! and watches the readiness socket with everything else it waits for.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::keeper::{self, KeeperSocket};
use super::{Shutdown, Signals, notify};
use crate::tls::SelfSigned;

/// The listening sockets handed to the new process: their descriptor numbers, comma-separated.
const ENV_LISTENERS: &str = "REACTOR_HTTPD_LISTENERS";
/// The descriptor on which the new process writes one byte once it serves.
const ENV_READY: &str = "REACTOR_HTTPD_READY";
/// The old process's pid: the variables above count only in the process whose readiness socket
/// leads to it (as `LISTEN_PID` does for systemd), never in one that merely inherited the
/// environment.
const ENV_PARENT: &str = "REACTOR_HTTPD_PARENT";

/// Set when the old process writes its self-signed certificate on the readiness socket for the
/// new one (see [`inherited_self_signed`]).
const ENV_SELF_SIGNED: &str = "REACTOR_HTTPD_SELF_SIGNED";
/// The most a certificate or key handed over may be; ours are well under 2 KiB.
const SELF_SIGNED_FIELD_MAX: usize = 64 * 1024;

/// How long the new process may take to serve before the upgrade is called off.
pub const READY_WITHIN: Duration = Duration::from_secs(10);

/// The old process's side: what to run, the sockets to pass, and the upgrade under way.
pub(crate) struct Upgrade {
    binary: PathBuf,
    args: Vec<OsString>,
    /// Copies of every listening socket (FD_CLOEXEC set: only the child's copies lose it),
    /// until the server stops or hands over: then they must not keep the sockets open.
    listeners: Arc<Mutex<Vec<OwnedFd>>>,
    /// The cores this process could use at start, before any thread was pinned: the new
    /// process is started from a pinned loop, and would otherwise see only that loop's core.
    cpus: Option<libc::cpu_set_t>,
    /// With `--tls-self-signed`, the certificate this process serves: the new one serves it too.
    self_signed: Option<SelfSigned>,
    /// As PID 1 of a container, the socket the new process reports to once this one keeps the
    /// container for it (see `keeper`): made at the first upgrade.
    keeper: Option<KeeperSocket>,
    state: State,
}

enum State {
    Idle,
    Starting {
        new: NewProcess,
        ready: UnixStream,
        since: Instant,
    },
    /// The new process serves; this one drains. Another SIGHUP is ignored.
    HandedOver,
}

/// The new process, as the old one holds it.
enum NewProcess {
    /// Its own child: how it ended, if it fails, can be read (`ended`, if the fork mode's
    /// parent reaped it: it reaps every child).
    Child {
        child: Child,
        ended: Option<ExitStatus>,
    },
    /// Under a service manager (`NOTIFY_SOCKET`), a grandchild whose parent, a go-between,
    /// ended at once, so the service manager is its parent: systemd takes a main process that
    /// is not its own child for one it cannot watch ("alien"), and on `systemctl stop` sends it
    /// SIGTERM and then at once SIGKILL, cutting off the drain, where it would wait for its own
    /// child's exit. The price: how it ended, if it fails, is told to its parent, not to us.
    Orphan(u32),
}

impl NewProcess {
    fn id(&self) -> u32 {
        match self {
            NewProcess::Child { child, .. } => child.id(),
            NewProcess::Orphan(pid) => *pid,
        }
    }

    /// Stops a new process that failed to be ready in time, or whose upgrade is called off.
    fn stop(&mut self, ready: &UnixStream) {
        match self {
            NewProcess::Child { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            // Not our child, so its pid is its own only while it lives: its end of the
            // readiness socket is closed once it has ended (and only then may its parent reap
            // it and the pid go to another process). Open, it lives (for all but the instant
            // between the two calls, and a pid is reused only once the numbers wrap around).
            NewProcess::Orphan(pid) => {
                let mut byte = 0u8;
                // SAFETY: recv(2) into one byte we own; MSG_PEEK leaves what it sees.
                let seen = unsafe {
                    libc::recv(
                        ready.as_raw_fd(),
                        (&mut byte as *mut u8).cast(),
                        1,
                        libc::MSG_PEEK | libc::MSG_DONTWAIT,
                    )
                };
                if seen != 0 {
                    // SAFETY: kill(2) on the pid of a process that lives (above).
                    unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
                }
            }
        }
    }
}

/// The pid the new process writes first on the readiness socket when it is an orphan (see
/// [`NewProcess::Orphan`]): before its exec, so it is there at once or very nearly.
fn read_pid(ready: &UnixStream) -> io::Result<u32> {
    ready.set_nonblocking(false)?;
    ready.set_read_timeout(Some(READY_WITHIN))?;
    let mut pid = [0; 4];
    let read = (&*ready).read_exact(&mut pid);
    ready.set_nonblocking(true)?;
    read.map_err(|err| io::Error::new(err.kind(), format!("the new process's pid: {err}")))?;
    Ok(u32::from_le_bytes(pid))
}

impl Upgrade {
    /// Resolves this process's binary and arguments now, at start, and keeps copies of its
    /// listening sockets to pass on, until `shutdown` is triggered; and the self-signed
    /// certificate, if it serves one.
    pub fn for_this_process(
        listeners: &[&TcpListener],
        shutdown: &Shutdown,
        self_signed: Option<SelfSigned>,
    ) -> io::Result<Upgrade> {
        let binary = started_from()?;
        let listeners: Vec<OwnedFd> = listeners
            .iter()
            .map(|listener| listener.try_clone().map(OwnedFd::from))
            .collect::<io::Result<_>>()?;
        let listeners = Arc::new(Mutex::new(listeners));
        let copies = listeners.clone();
        // A stop closes the listeners, so that new clients are refused rather than queued on a
        // socket nobody will accept from; these copies must not keep them open.
        shutdown.on_trigger(move || {
            copies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear()
        });
        // SAFETY: an all-zero cpu_set_t is a valid empty set, which sched_getaffinity fills.
        let mut cpus: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the pointer and size describe `cpus`, valid for the call.
        let got = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut cpus) };
        Ok(Upgrade {
            binary,
            args: std::env::args_os().skip(1).collect(),
            listeners,
            cpus: (got == 0).then_some(cpus),
            self_signed,
            keeper: None,
            state: State::Idle,
        })
    }

    /// SIGHUP: starts the new process. Returns the descriptor to watch for its readiness (then
    /// call [`Upgrade::check`] when it is readable, or when [`Upgrade::deadline`] passes).
    pub fn start(&mut self, shutdown: &Shutdown) -> Option<RawFd> {
        if let (State::HandedOver, Some(pid)) = (&self.state, keeper::passed_on_to()) {
            // As PID 1 (see `keeper::after_handover`), while this process drains.
            eprintln!("reactor-httpd: SIGHUP passed on to pid {pid}, which serves now");
            return None;
        }
        let ignored = match self.state {
            State::Starting { .. } => Some("an upgrade is already under way"),
            State::HandedOver => Some("the server has already handed over"),
            State::Idle if shutdown.is_triggered() => Some("the server is stopping"),
            State::Idle => None,
        };
        if let Some(why) = ignored {
            eprintln!("reactor-httpd: SIGHUP ignored: {why}");
            return None;
        }
        notify::reloading();
        match self.spawn() {
            Ok((new, ready)) => {
                let fd = ready.as_raw_fd();
                self.state = State::Starting {
                    new,
                    ready,
                    since: Instant::now(),
                };
                Some(fd)
            }
            Err(err) => {
                failed(&format!("cannot start {}: {err}", self.binary.display()));
                None
            }
        }
    }

    // ANCHOR: spawn
    fn spawn(&mut self) -> io::Result<(NewProcess, UnixStream)> {
        // A socket pair rather than a pipe: non-blocking reads and a clean end of stream.
        let (ready, child_end) = UnixStream::pair()?;
        ready.set_nonblocking(true)?;
        let mut inherited = self.listener_fds();
        if inherited.is_empty() {
            return Err(io::Error::other("the listening sockets are closed"));
        }
        let names = inherited
            .iter()
            .map(RawFd::to_string)
            .collect::<Vec<_>>()
            .join(",");
        inherited.push(child_end.as_raw_fd());
        let cpus = self.cpus;
        // As PID 1 this process is the one that would adopt an orphan: the new process stays
        // its child (reaped, and how it failed said), whoever else is told.
        let supervised = notify::is_supervised() && !keeper::is_first_process();
        let says_pid = child_end.as_raw_fd();
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            .env(ENV_LISTENERS, names)
            .env(ENV_READY, child_end.as_raw_fd().to_string())
            .env(ENV_PARENT, std::process::id().to_string())
            // Socket activation was this process's; the sockets it gave are in the list above.
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES")
            .env_remove(ENV_SELF_SIGNED);
        if self.self_signed.is_some() {
            command.env(ENV_SELF_SIGNED, "1");
        }
        if keeper::is_first_process() {
            // This process will stay, as PID 1, and must hear of the new one's own upgrades.
            if self.keeper.is_none() {
                self.keeper = Some(KeeperSocket::bind()?);
            }
            if let Some(socket) = &self.keeper {
                command.env("NOTIFY_SOCKET", socket.address());
            }
        }
        // SAFETY: runs in the child between fork and exec, where only async-signal-safe calls
        // are allowed: fork, getpid, write, _exit, fcntl and sched_setaffinity are system calls,
        // and nothing is allocated.
        unsafe {
            command.pre_exec(move || {
                if supervised {
                    // See `NewProcess::Orphan`: this child forks the new process and ends, so
                    // that the service manager becomes the new process's parent.
                    match libc::fork() {
                        -1 => return Err(io::Error::last_os_error()),
                        0 => {
                            // The new process, before anything else it writes: its pid.
                            let pid = (libc::getpid() as u32).to_le_bytes();
                            libc::write(says_pid, pid.as_ptr().cast(), pid.len());
                        }
                        _ => libc::_exit(0),
                    }
                }
                if let Some(cpus) = &cpus {
                    // Best effort: a process that may not widen its mask keeps the loop's.
                    libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), cpus);
                }
                // Every descriptor of ours is FD_CLOEXEC; these, and only these, must survive.
                for &fd in &inherited {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        // Our copy of the child's end closes here, so its end of stream means the child's end.
        drop(child_end);
        let mut new = match supervised {
            false => NewProcess::Child { child, ended: None },
            true => {
                // The go-between has ended, or is ending (the fork mode's parent may reap it
                // first); the new process wrote its pid before it even execs.
                let _ = child.wait();
                NewProcess::Orphan(read_pid(&ready)?)
            }
        };
        if let Some(made) = &self.self_signed {
            // Into the socket's empty buffer, which holds far more: this write does not wait.
            if let Err(err) = (&ready).write_all(&self_signed_message(made)) {
                new.stop(&ready);
                return Err(err);
            }
        }
        Ok((new, ready))
    }
    // ANCHOR_END: spawn

    /// When the upgrade under way is called off if the new process has not said it is ready.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Starting { since, .. } => Some(*since + READY_WITHIN),
            _ => None,
        }
    }

    /// Whether an upgrade is waiting for the new process.
    pub fn is_starting(&self) -> bool {
        matches!(self.state, State::Starting { .. })
    }

    /// The readiness socket was readable, or the deadline passed. If the new process is ready,
    /// this process hands over: `shutdown` is triggered as a handover. If it failed, one line
    /// says so and this process serves on. Otherwise (a spurious wake-up) nothing changes.
    pub fn check(&mut self, shutdown: &Shutdown) {
        let State::Starting { new, ready, since } = &mut self.state else {
            return;
        };
        let mut byte = [0];
        let outcome = match (&*ready).read(&mut byte) {
            Ok(1) => Ok(()),
            Ok(_) => Err(exited(new)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if since.elapsed() < READY_WITHIN {
                    return;
                }
                new.stop(ready);
                Err(format!(
                    "the new process was not ready within {} s; it was stopped",
                    READY_WITHIN.as_secs()
                ))
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return,
            Err(err) => Err(err.to_string()),
        };
        match outcome {
            Ok(()) => {
                // Before this process drains and exits: a service manager must not take its
                // exit for the service's (see `notify`). As PID 1, it does not exit: it keeps
                // the container for the new process once it has drained, and from now on (before
                // the line below, which an operator may act on) passes signals on to it.
                match self.keeper.take() {
                    Some(socket) => {
                        notify::handed_over_keeping();
                        keeper::after_handover(new.id(), socket);
                    }
                    None => notify::handed_over(new.id()),
                }
                eprintln!(
                    "reactor-httpd: handed over to pid {} after {} ms; finishing what is in flight",
                    new.id(),
                    since.elapsed().as_millis()
                );
                // The new process is not waited for: it outlives this process, and its new
                // parent (init, or the service manager) reaps it.
                self.state = State::HandedOver;
                // Our copies of the sockets are closed by the trigger.
                shutdown.hand_over();
            }
            Err(why) => {
                failed(&why);
                self.state = State::Idle;
            }
        }
    }

    /// `pid` was reaped by the fork mode's parent (not one of its connections' children), or by
    /// PID 1 in any mode ([`reap_all`]): if it is the new process under way, how it ended is
    /// kept to be said.
    pub fn reaped(&mut self, pid: u32, status: ExitStatus) {
        if let State::Starting {
            new: NewProcess::Child { child, ended },
            ..
        } = &mut self.state
            && child.id() == pid
        {
            *ended = Some(status);
        }
    }

    /// The descriptors of our copies of the listening sockets (a forked child closes them).
    pub fn listener_fds(&self) -> Vec<RawFd> {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.iter().map(AsRawFd::as_raw_fd).collect()
    }
}

/// As PID 1 (see `Signals::install`): reaps every child that has ended. If one is the new
/// process under way, how it ended is kept for `upgrade` to say.
pub(crate) fn reap_all(mut upgrade: Option<&mut Upgrade>) {
    super::io_util::reap_exited(|pid, status| {
        if let Some(upgrade) = upgrade.as_deref_mut() {
            upgrade.reaped(pid as u32, ExitStatus::from_raw(status));
        }
    });
}

/// The path this process was started from, as nginx keeps it: `argv[0]` made absolute against
/// the working directory now, or found on `PATH` now if it has no slash. Symbolic links are
/// kept, so a release switched by moving a `current` link is the one the upgrade runs
/// (`/proc/self/exe` names the file behind the links, and the old file once replaced).
fn started_from() -> io::Result<PathBuf> {
    let Some(arg0) = std::env::args_os().next().map(PathBuf::from) else {
        return std::env::current_exe();
    };
    if arg0.as_os_str().as_encoded_bytes().contains(&b'/') {
        return Ok(std::env::current_dir()?.join(arg0));
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(&arg0))
            .find(|candidate| candidate.is_file())
    });
    match on_path {
        Some(found) if found.is_absolute() => Ok(found),
        Some(found) => Ok(std::env::current_dir()?.join(found)),
        None => std::env::current_exe(),
    }
}

/// The new process closed its readiness socket without a word: it has exited, or will. A
/// process's descriptors close before its exit status is there to be read, so it is given a
/// moment (at most [`EXIT_WITHIN`] of this loop's time, once, for an upgrade that failed) to
/// say how it ended: the operator reads "exit status: 2" after its own line on stderr.
fn exited(new: &mut NewProcess) -> String {
    let (child, reaped) = match new {
        NewProcess::Child { child, ended } => (child, *ended),
        NewProcess::Orphan(_) => {
            return "the new process ended before it was ready (how, its parent the service \
                    manager knows)"
                .into();
        }
    };
    let since = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if since.elapsed() < EXIT_WITHIN => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(None) => {
                // It closed the socket but lives on: not one of ours.
                let _ = child.kill();
                let _ = child.wait();
                return "the new process closed its readiness socket without a word; it was \
                        stopped"
                    .into();
            }
            // Reaped already, by the fork mode's parent or PID 1, which reap every child.
            Err(_) => break reaped,
        }
    };
    match status {
        Some(status) => format!("the new process ended ({status}) before it was ready"),
        None => "the new process ended before it was ready".into(),
    }
}

/// How long a new process that closed its readiness socket has to be seen to have ended.
const EXIT_WITHIN: Duration = Duration::from_millis(100);

fn failed(why: &str) {
    eprintln!("reactor-httpd: upgrade failed: {why}; still serving");
    notify::upgrade_failed(why);
}

/// The new process's side: the listening sockets handed over by the old one, if this process
/// is the child of an upgrade. The readiness socket is kept for [`announce_ready`].
pub(crate) fn inherited_listeners() -> Result<Option<Vec<TcpListener>>, String> {
    let (Ok(parent), Ok(list), Ok(ready)) = (
        std::env::var(ENV_PARENT),
        std::env::var(ENV_LISTENERS),
        std::env::var(ENV_READY),
    ) else {
        return Ok(None);
    };
    let (Ok(parent), Ok(ready)) = (parent.parse::<i32>(), ready.parse::<RawFd>()) else {
        return Ok(None);
    };
    // Ours only if the readiness socket is there and its other end is the old process's (its
    // parent, or under a service manager its grandparent: see `NewProcess::Orphan`).
    if peer_pid(ready) != Some(parent) {
        return Ok(None);
    }
    // SAFETY: the old process opened this descriptor for us alone (its pid matches above).
    if unsafe { libc::fcntl(ready, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(format!(
            "{ENV_READY} names descriptor {ready}, which is not open"
        ));
    }
    // SAFETY: as above; from here this process owns it.
    let ready = unsafe { OwnedFd::from_raw_fd(ready) };
    *READY.lock().unwrap_or_else(PoisonError::into_inner) = Some(ready);
    list.split(',')
        .map(|fd| {
            fd.parse()
                .map_err(|_| format!("{ENV_LISTENERS}={list:?}: expected descriptors"))
                .and_then(super::activation::listener)
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// The pid of the process at the other end of the Unix socket `fd` (that made the pair), if `fd`
/// is one.
fn peer_pid(fd: RawFd) -> Option<i32> {
    let mut peer = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `peer`, which is that large; on a
    // descriptor that is not open or not a socket it fails and writes nothing.
    let got = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut peer as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (got == 0 && peer.pid > 0).then_some(peer.pid)
}

/// The new process's side, with `--tls-self-signed`: the certificate the old process served,
/// which it writes on the readiness socket as it starts this one ([`self_signed_message`]).
/// `None` if this process was not started by an upgrade, or by one that hands no certificate
/// over; it then makes its own.
pub(crate) fn inherited_self_signed() -> Result<Option<SelfSigned>, String> {
    if std::env::var_os(ENV_SELF_SIGNED).is_none() {
        return Ok(None);
    }
    let mut kept = READY.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(ready) = kept.take() else {
        return Ok(None); // not the child of an upgrade (see `inherited_listeners`)
    };
    let mut ready = UnixStream::from(ready);
    let read = read_self_signed(&mut ready);
    *kept = Some(OwnedFd::from(ready));
    read.map(Some)
        .map_err(|err| format!("the old process's certificate did not arrive: {err}"))
}

/// The self-signed certificate as the old process writes it for the new one: when it was made
/// (8 bytes), then the certificate and the key, each as a length (4 bytes) and the bytes, all
/// little-endian. [`read_self_signed`] reads it back.
fn self_signed_message(made: &SelfSigned) -> Vec<u8> {
    let mut message = Vec::with_capacity(16 + made.cert.len() + made.key.len());
    message.extend_from_slice(&made.made.to_le_bytes());
    for field in [&made.cert, &made.key] {
        message.extend_from_slice(&(field.len() as u32).to_le_bytes());
        message.extend_from_slice(field);
    }
    message
}

fn read_self_signed(ready: &mut UnixStream) -> io::Result<SelfSigned> {
    // Written before the old process even waits for us; a generous bound all the same.
    ready.set_read_timeout(Some(READY_WITHIN / 2))?;
    let mut made = [0; 8];
    ready.read_exact(&mut made)?;
    let made = u64::from_le_bytes(made);
    let mut field = || {
        let mut len = [0; 4];
        ready.read_exact(&mut len)?;
        let len = u32::from_le_bytes(len) as usize;
        if len > SELF_SIGNED_FIELD_MAX {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "too long"));
        }
        let mut bytes = vec![0; len];
        ready.read_exact(&mut bytes)?;
        Ok(bytes)
    };
    let cert = field()?;
    let key = field()?;
    Ok(SelfSigned { cert, key, made })
}

/// The readiness socket, while this process has not yet said it serves.
static READY: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Tells the old process that this one serves (its loops are about to poll): it may stop, and
/// it tells the service manager, if there is one, for both. A process not started by an upgrade
/// tells the service manager itself.
pub(crate) fn announce_ready() {
    let ready = READY.lock().unwrap_or_else(PoisonError::into_inner).take();
    match ready {
        Some(ready) => {
            let mut ready = UnixStream::from(ready);
            // If the old process is gone, there is no one to tell.
            let _ = ready.write_all(b"1");
        }
        None => notify::ready(),
    }
}

impl Drop for Upgrade {
    /// A stop while the new process starts: it is stopped too, rather than left to serve alone.
    /// And our copies of the listening sockets close.
    fn drop(&mut self) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        if let State::Starting { new, ready, .. } = &mut self.state {
            new.stop(ready);
        }
    }
}

/// What an event loop holds of the process's signals: the signal socket and SIGHUP's upgrade
/// (the first loop only).
pub(crate) type SignalDuty = Option<(Signals, Option<Upgrade>)>;

/// The first loop's signal socket is readable (a stop it brought was begun already, from the
/// shutdown's flag, at the start of the loop's turn): SIGHUP starts an upgrade; SIGUSR1 wakes every loop, to reopen its access log. Returns the new process's readiness
/// socket if one was started (the loop watches it), and when the upgrade under way is called
/// off.
pub(crate) fn on_signals(
    duty: &mut SignalDuty,
    shutdown: &Shutdown,
) -> (Option<RawFd>, Option<Instant>) {
    let Some((signals, upgrade)) = duty else {
        return (None, None);
    };
    // A stop is not among these: its handler set the shutdown's flag, and the loop began its
    // drain on it at the start of this turn.
    let received = signals.take();
    if received.child {
        reap_all(upgrade.as_mut());
    }
    if received.reopen {
        shutdown.wake_loops();
    }
    let started = match upgrade {
        Some(upgrade) if received.upgrade => upgrade.start(shutdown),
        _ => None,
    };
    (started, deadline(duty))
}

/// The new process's readiness socket is readable, or its time is up: returns when the upgrade
/// still under way is called off (`None`: it is over, either way).
pub(crate) fn check(duty: &mut SignalDuty, shutdown: &Shutdown) -> Option<Instant> {
    if let Some((_, Some(upgrade))) = duty {
        upgrade.check(shutdown);
    }
    deadline(duty)
}

fn deadline(duty: &SignalDuty) -> Option<Instant> {
    match duty {
        Some((_, Some(upgrade))) => upgrade.deadline(),
        _ => None,
    }
}
