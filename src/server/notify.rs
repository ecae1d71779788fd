//! systemd's service notifications (sd_notify(3)): what lets SIGHUP work under a service manager.
//!
//! With `Type=notify` (or `Type=notify-reload`), systemd passes `NOTIFY_SOCKET`, the address of a
//! datagram socket, and waits to be told: `READY=1` once the server serves, `RELOADING=1` when
//! a reload (here: an upgrade) begins, and `MAINPID=N` when the process it should watch changes.
//! That last one is the point. An upgrade's new process is a child of the old one; when the old
//! one exits, a manager that still takes it for the service's main process takes the service
//! for stopped and stops the rest of its cgroup, the new process with it. So the old process,
//! still the main one, names its successor before it begins to drain:
//!
//! ```text
//!   start:                        READY=1
//!   SIGHUP taken:                 RELOADING=1, MONOTONIC_USEC=<now>
//!   the new one serves:           MAINPID=<new>, READY=1        (sent by the old one)
//!   the new one failed:           READY=1, STATUS=upgrade failed: ...; still serving
//! ```
//!
//! The new process says nothing at its start (its predecessor speaks for it: until then it is
//! not the main process, whose word alone counts under systemd's default `NotifyAccess=main`),
//! and the old one says nothing once it has named the new one. Named is not enough: systemd
//! waits at a stop only for a main process that is its own child, so under a service manager
//! the new process is started to become one (`upgrade::NewProcess::Orphan`). Without
//! `NOTIFY_SOCKET` nothing is sent. A message that cannot be sent is said once on stderr
//! (systemd then times the start out, and the operator should know why).

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};

/// The variable systemd sets to the socket it listens on for this service's notifications.
const ENV_SOCKET: &str = "NOTIFY_SOCKET";

/// Whether a service manager listens (then an upgrade's new process must become its child: see
/// `upgrade::NewProcess::Orphan`).
pub(crate) fn is_supervised() -> bool {
    target().is_some()
}

/// Where to send notifications: `NOTIFY_SOCKET`, unless unset or empty (as sd_notify reads it).
fn target() -> Option<std::ffi::OsString> {
    std::env::var_os(ENV_SOCKET).filter(|target| !target.is_empty())
}

/// The server serves (its listening line is out): systemd may take the start as done.
pub(crate) fn ready() {
    send("READY=1");
}

/// An upgrade begins: a SIGHUP was taken, its new process is about to start.
pub(crate) fn reloading() {
    send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

/// The upgrade's new process, `pid`, serves: it is the service's main process from now on.
pub(crate) fn handed_over(pid: u32) {
    send(&format!("MAINPID={pid}\nREADY=1\nSTATUS="));
}

/// As [`handed_over`], from PID 1 of a container, which stays the main process to whatever
/// watches the container (it keeps the new one: see `keeper`).
pub(crate) fn handed_over_keeping() {
    send("READY=1\nSTATUS=");
}

/// What the servers under the keeper said, passed on (without `MAINPID=`).
pub(crate) fn relay(message: &str) {
    send(message);
}

/// The upgrade failed and this process serves on: the reload is over, and `systemctl status`
/// says why.
pub(crate) fn upgrade_failed(why: &str) {
    // One line: a message is newline-separated assignments, and `why` may quote a path.
    let why = why.replace('\n', " ");
    send(&format!(
        "READY=1\nSTATUS=upgrade failed: {why}; still serving"
    ));
}

fn send(message: &str) {
    let Some(target) = target() else {
        return;
    };
    if let Err(err) = send_to(&target, message.as_bytes()) {
        static SAID: AtomicBool = AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            eprintln!(
                "reactor-httpd: cannot notify the service manager at {ENV_SOCKET}={}: {err}",
                target.to_string_lossy()
            );
        }
    }
}

/// Sends one datagram to `target`: a socket's path, or, beginning with `@`, a name in Linux's
/// abstract namespace (as systemd gives it).
fn send_to(target: &OsStr, message: &[u8]) -> io::Result<()> {
    let addr = match target.as_bytes() {
        [] => return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty")),
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name)?,
        [b'/', ..] => SocketAddr::from_pathname(target)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither a path nor an abstract socket name",
            ));
        }
    };
    let socket = UnixDatagram::unbound()?;
    let sent = socket.send_to_addr(message, &addr)?;
    match sent == message.len() {
        true => Ok(()),
        false => Err(io::Error::new(io::ErrorKind::WriteZero, "sent in part")),
    }
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares a reload's start against.
fn monotonic_usec() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the pointer is to a timespec valid for the call; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receiver(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0; 256];
        let len = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    #[test]
    fn sends_to_a_path_and_to_an_abstract_name() {
        let dir = std::env::temp_dir().join(format!("notify-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let by_path = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), b"READY=1").unwrap();
        assert_eq!(receiver(&by_path), "READY=1");
        std::fs::remove_dir_all(&dir).unwrap();

        let name = format!("reactor-httpd-notify-test-{}", std::process::id());
        let abstract_addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let by_name = UnixDatagram::bind_addr(&abstract_addr).unwrap();
        send_to(OsStr::new(&format!("@{name}")), b"MAINPID=7\nREADY=1").unwrap();
        assert_eq!(receiver(&by_name), "MAINPID=7\nREADY=1");
    }

    #[test]
    fn refuses_what_is_not_a_unix_socket_address() {
        for target in ["", "vsock:2:1234", "relative/path"] {
            assert!(
                send_to(OsStr::new(target), b"READY=1").is_err(),
                "{target:?}"
            );
        }
        // A path nobody listens on: the send fails, it does not block or panic.
        assert!(send_to(OsStr::new("/nonexistent/notify"), b"READY=1").is_err());
    }
}
