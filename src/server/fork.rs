//! A process per connection: the forking server of the tutorials.
//!
//! A single-threaded parent waits for connections; for each one it forks. The child closes the
//! listener, serves the connection with the same blocking driver as the other modes
//! (`blocking::serve_connection`), and leaves with `_exit`; the parent closes its copy of the
//! connection at once and goes back to waiting. Children that exit are reaped as soon as SIGCHLD
//! arrives (`waitpid(-1, WNOHANG)` until there are none), so no zombies pile up.
//!
//! The parent must stay single-threaded, so this mode takes its signals itself, without the
//! signal thread the blocking modes use: SIGINT and SIGTERM set the shutdown flag, and every
//! signal, SIGCHLD included, also writes a byte to a socket the parent polls (the self-pipe).
//! Relying on the signal to interrupt `epoll_wait` is not enough: a child that exits after the
//! parent last reaped but before it starts waiting would interrupt nothing, and its zombie would
//! stay until the next connection arrived. The byte stays in the socket until the wait sees it.
//! At shutdown the parent stops accepting and waits, up to the drain time, for its children to
//! finish; it signals none of them.

use std::fs;
use std::io;
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::sync::Arc;
use std::time::Instant;

use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};

use super::blocking::{self, Active};
use super::shutdown::{DRAIN_GRACE, self_pipe};
use super::{LoopEnv, Shared, Shutdown, Signals, io_util};

const LISTENER: Token = Token(0);
const SIGNALED: Token = Token(1);

pub(crate) fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: Shutdown,
) -> io::Result<()> {
    if threads_in_process()? != 1 {
        return Err(io::Error::other(
            "fork mode needs a single-threaded process (the reactor-httpd binary is one)",
        ));
    }
    // Signals set a flag and write a wake-up byte; nothing else runs in the handlers.
    let requested = shutdown.flag();
    let mut registered = vec![
        signal_hook::flag::register(SIGINT, requested.clone())?,
        signal_hook::flag::register(SIGTERM, requested)?,
    ];
    let (wake, pipe_registered) = self_pipe(&[SIGINT, SIGTERM, SIGCHLD])?;
    registered.extend(pipe_registered);
    wake.set_nonblocking(true)?;
    let mut wake = mio::net::UnixStream::from_std(wake);
    let mut poll = Poll::new()?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    poll.registry()
        .register(&mut wake, SIGNALED, Interest::READABLE)?;
    let mut env = LoopEnv::new(shared.clone())?;
    let mut events = Events::with_capacity(16);
    let mut children = 0usize;
    let mut paused_until: Option<Instant> = None;
    let mut trouble = io_util::AcceptTrouble::default();

    while !shutdown.is_triggered() {
        let timeout = paused_until.map(|at| at.saturating_duration_since(Instant::now()));
        if let Err(err) = poll.poll(&mut events, timeout) {
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        // Emptied before reaping: a child that exits after this leaves a byte for the next wait.
        Signals::drain(&wake);
        children -= reap();
        if shutdown.is_triggered() {
            break;
        }
        if paused_until.is_some_and(|at| at > Instant::now()) {
            continue;
        }
        paused_until = None;
        // Edge-triggered: take every queued connection.
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    trouble.accepted();
                    // Accepted sockets are non-blocking under mio; the child blocks.
                    let stream = into_std(stream);
                    if children >= shared.max_connections {
                        blocking::refuse(stream, peer.ip(), &mut env);
                        continue;
                    }
                    match fork_child(stream, peer.ip(), &listener, &poll, &shared, &shutdown) {
                        Ok(()) => children += 1,
                        Err(err) => {
                            // Out of processes or memory: the connection is dropped; wait before more.
                            eprintln!("reactor-httpd: fork: {err}");
                            paused_until = Some(Instant::now() + io_util::ACCEPT_BACKOFF);
                            break;
                        }
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if io_util::is_transient_accept_error(&err) => {}
                Err(err) => {
                    trouble.failed(&err);
                    paused_until = Some(Instant::now() + io_util::ACCEPT_BACKOFF);
                    break;
                }
            }
        }
        env.flush_log_if_due();
    }

    // Stop accepting; give the children the drain time to finish what they serve.
    drop(listener);
    let deadline = Instant::now() + DRAIN_GRACE;
    while children > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // Each child's exit writes a wake-up byte.
        let _ = poll.poll(&mut events, Some(left));
        Signals::drain(&wake);
        children -= reap();
    }
    for id in registered {
        signal_hook::low_level::unregister(id);
    }
    Ok(())
}

/// Forks a child to serve `stream`. In the parent, closes its copy of the connection.
fn fork_child(
    stream: TcpStream,
    peer: IpAddr,
    listener: &mio::net::TcpListener,
    poll: &Poll,
    shared: &Arc<Shared>,
    shutdown: &Shutdown,
) -> io::Result<()> {
    // SAFETY: the parent is single-threaded (checked when `run` starts, and it starts no
    // threads), so the child is a consistent copy of it: no other thread can have been holding
    // a lock (malloc's, stdout's) at the moment of the fork. The child serves its connection
    // and leaves with `_exit`, never returning into the parent's code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => serve_child(
            stream,
            peer,
            listener.as_raw_fd(),
            poll.as_raw_fd(),
            shared,
            shutdown,
        ),
        _ => Ok(()), // `stream` is dropped here: the parent's copy is closed
    }
}

/// The child: serves one connection, then exits.
fn serve_child(
    stream: TcpStream,
    peer: IpAddr,
    listener_fd: i32,
    poll_fd: i32,
    shared: &Arc<Shared>,
    shutdown: &Shutdown,
) -> ! {
    // SAFETY: these descriptors were inherited from the parent and nothing in the child uses
    // them; the objects that own them in this copy of memory are never dropped (see `_exit`).
    unsafe {
        libc::close(listener_fd);
        libc::close(poll_fd);
    }
    let code = match (stream.set_nonblocking(false), LoopEnv::new(shared.clone())) {
        (Ok(()), Ok(mut env)) => {
            // SIGTERM reaching the child (a Ctrl-C reaches the whole process group) sets this
            // copy's shutdown flag: the connection drains like in every other mode.
            blocking::serve_connection(stream, peer, &mut env, &Active::default(), shutdown);
            if let Some(log) = &mut env.log {
                log.flush();
            }
            0
        }
        _ => 1,
    };
    // SAFETY: _exit ends the process without running the parent's destructors or atexit
    // handlers, which belong to the parent's copy of this memory.
    unsafe { libc::_exit(code) }
}

/// Reaps every child that has exited, without blocking; returns how many.
fn reap() -> usize {
    let mut reaped = 0;
    loop {
        // SAFETY: waitpid with a null status pointer only reaps; WNOHANG keeps it from blocking.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid > 0 {
            reaped += 1;
        } else if pid < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        } else {
            return reaped; // 0: children remain, none exited; -1 ECHILD: no children
        }
    }
}

/// mio's stream to std's, keeping the descriptor.
fn into_std(stream: mio::net::TcpStream) -> TcpStream {
    // SAFETY: into_raw_fd hands over sole ownership of the open descriptor.
    unsafe { TcpStream::from_raw_fd(stream.into_raw_fd()) }
}

fn threads_in_process() -> io::Result<usize> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|count| count.trim().parse().ok())
        .ok_or_else(|| io::Error::other("cannot count this process's threads"))
}
