//! Listening sockets, made with socket2 so that every event loop can have its own on one port.
//!
//! With SO_REUSEPORT, several sockets bind the same address and the kernel spreads incoming
//! connections across them by a hash of the client's address and port. Each reactor loop then
//! accepts only from its own socket: no shared accept queue, no thundering herd, no lock.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Large enough for a burst of connects; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

/// `count` listeners on `addr`, all sharing its port through SO_REUSEPORT. With port 0 the first
/// bind picks the port and the others join it.
pub(crate) fn bind_group(
    addr: SocketAddr,
    count: usize,
    nonblocking: bool,
    share: bool,
) -> io::Result<Vec<TcpListener>> {
    if addr.port() != 0 && !share {
        // SO_REUSEPORT would let us silently share a port with another server run by the same
        // user. A plain bind first tells whether the address is really free.
        drop(bind(addr, false, false)?);
    }
    let first = bind(addr, true, nonblocking)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(bind(addr, true, nonblocking)?);
    }
    Ok(listeners)
}

// ANCHOR: bind
/// One listening socket (blocking or not).
pub(crate) fn bind(
    addr: SocketAddr,
    reuse_port: bool,
    nonblocking: bool,
) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // `[::]:8080` means IPv6 only, as in nginx; bind 0.0.0.0 too for both.
        socket.set_only_v6(true)?;
    }
    // Restarting the server must not wait for old connections in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(nonblocking)?;
    Ok(socket.into())
}
// ANCHOR_END: bind

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_one_port_and_a_taken_port_is_refused() {
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 3, true, false).unwrap();
        let port = group[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        assert!(group.iter().all(|l| l.local_addr().unwrap().port() == port));
        let taken = SocketAddr::from(([127, 0, 0, 1], port));
        let err = bind_group(taken, 1, true, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
