//! systemd socket activation: listening sockets made by someone else and passed in.
//!
//! systemd (or `systemd-socket-activate`, or any supervisor that follows the protocol) binds the
//! sockets itself, starts the server with them open from descriptor 3 on, and says so in two
//! variables: `LISTEN_FDS`, how many, and `LISTEN_PID`, for which process. A socket held by
//! the supervisor keeps its queue while the server restarts, so no connection is refused in
//! the gap. As `sd_listen_fds` does, the variables count only when `LISTEN_PID` is this
//! process (a child that inherits them is not meant), each descriptor is checked to be a
//! listening stream socket, and each gets FD_CLOEXEC.

use std::net::TcpListener;
use std::os::fd::{FromRawFd, RawFd};

use socket2::{Socket, Type};

/// The first descriptor passed (`SD_LISTEN_FDS_START`).
const FIRST: RawFd = 3;

/// The listening sockets passed to this process, if any. An error names what is wrong with
/// them, for one line on stderr.
pub(crate) fn passed_listeners() -> Result<Option<Vec<TcpListener>>, String> {
    let Ok(pid) = std::env::var("LISTEN_PID") else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>() != Ok(std::process::id()) {
        return Ok(None);
    }
    let count = std::env::var("LISTEN_FDS").unwrap_or_default();
    let count: RawFd = match count.trim().parse() {
        Ok(n) if n > 0 && n < 1024 => n,
        _ => {
            return Err(format!(
                "LISTEN_FDS={count:?}: expected a number of sockets"
            ));
        }
    };
    (FIRST..FIRST + count)
        .map(listener)
        .collect::<Result<_, _>>()
        .map(Some)
}

pub(super) fn listener(fd: RawFd) -> Result<TcpListener, String> {
    // SAFETY: the supervisor (or the old process of an upgrade) passed this descriptor to this
    // process, whose pid it named, and nothing else in it owns it; fcntl first proves the descriptor is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!(
            "descriptor {fd}, passed as a listening socket, is not open"
        ));
    }
    // SAFETY: as above; from here the socket owns the descriptor.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    let stream = socket.r#type().is_ok_and(|kind| kind == Type::STREAM);
    let listening = socket.is_listener().unwrap_or(false);
    let addr = socket.local_addr().ok().and_then(|addr| addr.as_socket());
    if !(stream && listening && addr.is_some()) {
        return Err(format!(
            "descriptor {fd}, passed as a listening socket, is not a listening TCP socket"
        ));
    }
    socket
        .set_cloexec(true)
        .map_err(|err| format!("descriptor {fd}: {err}"))?;
    Ok(socket.into())
}
