//! PID 1 of a container: what lets SIGHUP work when this server is the first process of its PID
//! namespace (`docker run IMAGE` with no `--init`, a Kubernetes pod's container).
//!
//! When the first process of a PID namespace exits, the kernel kills every other process in it.
//! An upgrade's old process exits once it has drained, so as PID 1 it would take the new one
//! down with it: the container ends, and every connection with it. So PID 1 does not exit after
//! it has handed over and drained: it executes the binary again as the *keeper*, a small
//! process that stays PID 1 while the servers come and go under it, as a service manager does:
//!
//! ```text
//!   PID 1 serves                   SIGHUP: new process N (NOTIFY_SOCKET = the keeper's socket)
//!   PID 1 hands over, drains       then exec: PID 1 is the keeper of N
//!   keeper  ◀── SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 ──  docker stop / kill -s HUP
//!           ──▶ the same signal, to the main process (N)
//!           ◀── MAINPID=M from N, when N hands over to M (sd_notify's message)
//!           reaps every process that ends (PID 1's duty); when the main process ends, waits
//!           for the others a moment, then exits with the main process's status
//! ```
//!
//! The keeper learns each new main process the way systemd does: the new process is given
//! `NOTIFY_SOCKET`, the keeper's socket, so its own upgrades report `MAINPID=` there (see
//! `notify`), and only a message sent by the main process counts (the kernel attaches the
//! sender's pid, `SO_PASSCRED`). What else the servers say is passed on to the
//! `NOTIFY_SOCKET` PID 1 was given, if any (Podman's `--sdnotify=container`), without `MAINPID=`:
//! to whatever watches the container, its main process stays the keeper.
//!
//! The keeper is a fresh image of this process's own binary (`exec` of `/proc/self/exe`, the
//! file it runs even if a new one was installed over its path: one that knows this protocol),
//! not the old server carried on: none of the old server's threads (a handler left running, a
//! timer's thread) or memory stays behind. The signals it forwards are blocked across the
//! `exec` and stay pending until it has its handlers, so a `docker stop` at that instant is not
//! lost (PID 1 never receives a signal it has no handler for).
//!
//! Not covered: a server that is not PID 1 under an init that exits with its first child
//! (`docker run --init`, tini, dumb-init). That init ends the container when the old process
//! exits; run the server as the container's first process instead.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use libc::c_int;

use super::shutdown::{STOP_SIGNALS, Signals, self_pipe, wait_readable};
use super::{io_util, notify};

/// Set, in the keeper's own environment only, to `MAIN,FD`: the main process's pid and the
/// descriptor of the keeper's socket.
const ENV_KEEP: &str = "REACTOR_HTTPD_KEEP";

/// The signals the keeper passes on to the main process: every signal that stops the server
/// ([`STOP_SIGNALS`]), and SIGHUP and SIGUSR1.
const FORWARDED: [c_int; 5] = [
    STOP_SIGNALS[0],
    STOP_SIGNALS[1],
    STOP_SIGNALS[2],
    libc::SIGHUP,
    libc::SIGUSR1,
];

// A stop signal added there must be added here too.
const _: () = assert!(STOP_SIGNALS.len() == 3);

/// The signals the keeper takes: those it passes on, and SIGCHLD.
const TAKEN: [c_int; 6] = [
    FORWARDED[0],
    FORWARDED[1],
    FORWARDED[2],
    FORWARDED[3],
    FORWARDED[4],
    libc::SIGCHLD,
];

/// Once the main process has ended, how long the others (an old process still draining) have
/// before the keeper exits, and with it, by the kernel's hand, all of them.
const OTHERS_WITHIN: Duration = Duration::from_secs(5);

/// Whether this process is the first of its PID namespace, whose exit ends every other one in it.
pub(crate) fn is_first_process() -> bool {
    std::process::id() == 1
}

/// The keeper's socket, made by PID 1 at its first upgrade: the new process is told its address
/// in `NOTIFY_SOCKET`.
pub(crate) struct KeeperSocket {
    socket: UnixDatagram,
    /// `@name`, as `NOTIFY_SOCKET` gives an abstract socket.
    address: String,
}

impl KeeperSocket {
    /// A socket in the abstract namespace (no file to leave behind, none needed on a read-only
    /// root), with a name no other container sharing the network namespace would pick.
    pub(crate) fn bind() -> io::Result<KeeperSocket> {
        // std's hasher keys are random per process: 64 random bits, with no dependency.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let name = format!("reactor-httpd-keeper-{random:016x}");
        let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)?;
        // From the start: a message carries its sender's pid only if the option was on when it
        // was sent, and the new process may speak before this one has become the keeper.
        pass_credentials(&socket)?;
        Ok(KeeperSocket {
            socket,
            address: format!("@{name}"),
        })
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }
}

/// What PID 1 keeps from its handover to the end of its drain: then it becomes the keeper.
struct Pending {
    main: u32,
    socket: KeeperSocket,
}

static PENDING: Mutex<Option<Pending>> = Mutex::new(None);

/// PID 1 has handed over to `main`: once it has drained, it is to keep the namespace for it.
/// Meanwhile the signals a container's runtime sends go on to `main` too, as the keeper will
/// pass them on: a `docker stop` during the drain stops the new process, not only this one.
pub(crate) fn after_handover(main: u32, socket: KeeperSocket) {
    *PENDING.lock().unwrap_or_else(PoisonError::into_inner) = Some(Pending { main, socket });
    for signal in FORWARDED {
        // SAFETY: the action only calls kill(2), which is async-signal-safe.
        let passed = unsafe {
            signal_hook::low_level::register(signal, move || {
                libc::kill(main as i32, signal);
            })
        };
        if let Err(err) = passed {
            eprintln!("reactor-httpd: cannot pass signals on to pid {main}: {err}");
        }
    }
}

/// The process signals are passed on to, once PID 1 has handed over.
pub(crate) fn passed_on_to() -> Option<u32> {
    let pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    pending.as_ref().map(|pending| pending.main)
}

/// Called where this process would exit: if it is PID 1 and has handed over, it becomes the
/// keeper instead (this returns only if that failed: one line on stderr, and the process exits
/// as before, ending the namespace).
pub fn keep_if_handed_over() {
    // Held through the exec: the main thread at the end of the drain and the thread that ends
    // a drain that overran may both come here, and the second must wait for the first's exec
    // (which ends it), not exit meanwhile.
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(keeping) = pending.take() else {
        return;
    };
    let err = exec_keeper(&keeping);
    eprintln!(
        "reactor-httpd: cannot stay as PID 1 for pid {} (exec {SELF_EXE}: {err}); exiting, \
         which ends the other processes of this PID namespace",
        keeping.main
    );
}

/// This process's own binary, whatever was installed over its path since.
const SELF_EXE: &str = "/proc/self/exe";

fn exec_keeper(pending: &Pending) -> io::Error {
    let fd = pending.socket.socket.as_raw_fd();
    let mut command = Command::new(SELF_EXE);
    command
        .arg0("reactor-httpd (keeper)")
        .env(ENV_KEEP, format!("{},{fd}", pending.main));
    // SAFETY: runs just before exec (in this process: `exec` does not fork), and makes only
    // system calls.
    unsafe {
        command.pre_exec(move || {
            // After std's own reset of the signal mask: the forwarded signals wait, pending,
            // for the keeper's handlers (see the module doc).
            libc::pthread_sigmask(libc::SIG_BLOCK, &taken_signals(), std::ptr::null_mut());
            // The socket, and only it, survives the exec.
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.exec()
}

/// At the start of `main`: if this process is the keeper (PID 1, started by [`exec_keeper`]),
/// keeps until the main process ends and returns the exit code to end with.
pub fn run_if_keeper() -> Option<ExitCode> {
    let value = std::env::var(ENV_KEEP).ok()?;
    // SAFETY: single-threaded still (the first thing `main` does); nothing reads the
    // environment concurrently.
    unsafe { std::env::remove_var(ENV_KEEP) };
    let (main, fd) = value.split_once(',')?;
    let (Ok(main), Ok(fd)) = (main.parse::<i32>(), fd.parse::<RawFd>()) else {
        return None;
    };
    if !is_first_process() || !is_datagram_socket(fd) {
        return None; // an inherited variable, not ours
    }
    // SAFETY: PID 1 passed this descriptor to itself across its exec, for this alone; it is
    // not to pass on to anything the keeper might start.
    let socket = UnixDatagram::from(unsafe { OwnedFd::from_raw_fd(fd) });
    // SAFETY: fcntl on the descriptor just taken.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(match Keeper::new(main, socket) {
        Ok(keeper) => keeper.run(),
        Err(err) => {
            eprintln!("reactor-httpd: the keeper cannot start: {err}");
            ExitCode::from(1)
        }
    })
}

/// [`TAKEN`], as a signal set.
fn taken_signals() -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is storage sigemptyset then initializes; sigaddset only sets
    // bits in it, for valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in TAKEN {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

fn is_datagram_socket(fd: RawFd) -> bool {
    let mut kind: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `kind`; on a descriptor that is not a
    // socket it fails and writes nothing.
    let got = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut c_int).cast(),
            &mut len,
        )
    };
    got == 0 && kind == libc::SOCK_DGRAM
}

struct Keeper {
    /// The process signals go to, and whose end is the keeper's.
    main: i32,
    socket: UnixDatagram,
    /// The signal socket, and a flag for each forwarded signal (in [`FORWARDED`]'s order).
    wake: std::os::unix::net::UnixStream,
    flags: Vec<Arc<AtomicBool>>,
    /// Processes reaped that were not the main one (most recent last, a few): a main process
    /// named after it ended is known to have ended.
    reaped: Vec<(i32, u8)>,
}

impl Keeper {
    fn new(main: i32, socket: UnixDatagram) -> io::Result<Keeper> {
        let flags: Vec<Arc<AtomicBool>> = FORWARDED.iter().map(|_| Arc::default()).collect();
        for (&signal, flag) in FORWARDED.iter().zip(&flags) {
            signal_hook::flag::register(signal, flag.clone())?;
        }
        let (wake, _registered) = self_pipe(&TAKEN)?;
        wake.set_nonblocking(true)?;
        socket.set_nonblocking(true)?; // SO_PASSCRED is on since `KeeperSocket::bind`
        // The handlers are in place: what came since the exec is delivered now.
        // SAFETY: unblocking only, of a set we own.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &taken_signals(), std::ptr::null_mut()) };
        Ok(Keeper {
            main,
            socket,
            wake,
            flags,
            reaped: Vec::new(),
        })
    }

    fn run(mut self) -> ExitCode {
        // The process serving may have handed over already, while this one drained.
        self.messages();
        eprintln!(
            "reactor-httpd: PID 1 stays, as the keeper of pid {} (signals go to it; the \
             container ends with it)",
            self.main
        );
        let status = loop {
            self.wait(None);
            self.messages();
            self.forward();
            if let Some(status) = self.reap() {
                break status;
            }
        };
        // The others (an old process still draining) have a moment to finish.
        let until = Instant::now() + OTHERS_WITHIN;
        while Instant::now() < until && has_children() {
            self.wait(Some(until));
            self.messages();
            let _ = self.reap();
        }
        ExitCode::from(status)
    }

    /// Until a signal or a message comes, a second at most (a check on the children then, in
    /// case a SIGCHLD came before the handler was there), or until `until`.
    fn wait(&self, until: Option<Instant>) {
        let tick = Instant::now() + Duration::from_secs(1);
        let until = until.map_or(tick, |until| until.min(tick));
        wait_readable(
            &[self.wake.as_raw_fd(), self.socket.as_raw_fd()],
            Some(until),
        );
        Signals::drain(&self.wake);
    }

    /// Passes each signal that came on to the main process.
    fn forward(&self) {
        for (&signal, flag) in FORWARDED.iter().zip(&self.flags) {
            if flag.swap(false, Ordering::SeqCst) {
                // SAFETY: kill(2) on the main process, our child (or reaped: then ESRCH).
                unsafe { libc::kill(self.main, signal) };
            }
        }
    }

    /// Reads the messages waiting: the main process's `MAINPID=` names its successor; the rest
    /// is passed on (see the module doc).
    fn messages(&mut self) {
        let mut buf = [0u8; 4096];
        while let Some((len, sender)) = receive(&self.socket, &mut buf) {
            if sender != Some(self.main) {
                continue; // only the main process speaks for the service, as under systemd
            }
            let text = String::from_utf8_lossy(&buf[..len]);
            let mut others = Vec::new();
            for line in text.lines() {
                match line.strip_prefix("MAINPID=").map(str::parse::<i32>) {
                    Some(Ok(pid)) if pid > 1 => self.main = pid,
                    Some(_) => {}
                    None => others.push(line),
                }
            }
            if !others.is_empty() {
                notify::relay(&others.join("\n"));
            }
        }
    }

    /// Reaps every child that ended; returns the exit code to end with once the main process
    /// has ended (and named no successor first).
    fn reap(&mut self) -> Option<u8> {
        let mut ended = None;
        io_util::reap_exited(|pid, status| {
            let code = exit_code(status);
            if pid == self.main {
                // A successor named just before the exit is in the socket already.
                self.messages();
                if self.main == pid {
                    ended = Some(code);
                }
            } else {
                if self.reaped.len() == 16 {
                    self.reaped.remove(0);
                }
                self.reaped.push((pid, code));
            }
        });
        // Or a successor named after it had ended already (it failed at once).
        ended.or_else(|| {
            self.reaped
                .iter()
                .find(|(pid, _)| *pid == self.main)
                .map(|&(_, code)| code)
        })
    }
}

/// A shell's exit code for a wait status: the exit status, or 128 + the signal.
fn exit_code(status: c_int) -> u8 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u8
    } else {
        128u8.saturating_add(libc::WTERMSIG(status) as u8)
    }
}

fn has_children() -> bool {
    // SAFETY: waitid(2) with WNOHANG | WNOWAIT only looks: ECHILD when there are none.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        ) == 0
    }
}

/// Has the kernel attach its sender's credentials to each message `socket` receives.
fn pass_credentials(socket: &UnixDatagram) -> io::Result<()> {
    let on: c_int = 1;
    // SAFETY: setsockopt reads an int from a pointer valid for the call.
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&on as *const c_int).cast(),
            size_of::<c_int>() as libc::socklen_t,
        )
    };
    match set {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// One datagram, if one waits, and the pid of the process that sent it.
fn receive(socket: &UnixDatagram, buf: &mut [u8]) -> Option<(usize, Option<i32>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Aligned as a cmsghdr must be; room for the credentials and a few descriptors.
    let mut control = [0u64; 16];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = size_of_val(&control);
    // SAFETY: recvmsg(2) into the buffers described above.
    let len = unsafe {
        libc::recvmsg(
            socket.as_raw_fd(),
            &mut message,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    };
    if len < 0 {
        return None;
    }
    let mut sender = None;
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, within its length.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&message);
        while !header.is_null() {
            let data = libc::CMSG_DATA(header);
            match ((*header).cmsg_level, (*header).cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                    let credentials: libc::ucred = std::ptr::read_unaligned(data.cast());
                    sender = Some(credentials.pid);
                }
                (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                    // Descriptors nobody should send: closed, not kept.
                    let bytes = (*header).cmsg_len - libc::CMSG_LEN(0) as usize;
                    for at in 0..bytes / size_of::<c_int>() {
                        let fd: c_int = std::ptr::read_unaligned(data.cast::<c_int>().add(at));
                        libc::close(fd);
                    }
                }
                _ => {}
            }
            header = libc::CMSG_NXTHDR(&message, header);
        }
    }
    Some((len as usize, sender))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_says_who_sent_it() {
        let (ours, theirs) = UnixDatagram::pair().unwrap();
        pass_credentials(&ours).unwrap();
        theirs.send(b"MAINPID=7\nREADY=1").unwrap();
        let mut buf = [0; 64];
        let (len, sender) = receive(&ours, &mut buf).unwrap();
        assert_eq!(&buf[..len], b"MAINPID=7\nREADY=1");
        assert_eq!(sender, Some(std::process::id() as i32));
        assert!(receive(&ours, &mut buf).is_none(), "nothing more waits");
    }

    #[test]
    fn exit_codes_as_a_shell_gives_them() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(libc::SIGKILL), 128 + 9);
    }

    #[test]
    fn only_a_datagram_socket_is_taken_for_the_keepers() {
        let (datagram, _) = UnixDatagram::pair().unwrap();
        let (stream, _) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(is_datagram_socket(datagram.as_raw_fd()));
        assert!(!is_datagram_socket(stream.as_raw_fd()));
        assert!(!is_datagram_socket(-1));
        // Not PID 1 here: whatever the variable said, this process would be no keeper.
        assert!(!is_first_process());
    }
}
