//! A process per connection: the forking server of the tutorials.
//!
//! A single-threaded parent waits for connections; for each one it forks. The child closes the
//! listener, serves the connection with the same blocking driver as the other modes
//! (`blocking::serve_connection`), and leaves with `_exit`; the parent closes its copy of the
//! connection at once and goes back to waiting. Children that exit are reaped as soon as SIGCHLD
//! arrives (`waitpid(-1, WNOHANG)` until there are none), so no zombies pile up.
//!
//! The parent must stay single-threaded, so this mode takes its signals itself, without the
//! signal thread the blocking modes use: SIGINT, SIGTERM and SIGQUIT set the shutdown flag,
//! SIGHUP a flag of its own (the parent starts the upgrade and watches its readiness socket in
//! the same poll), and every signal, SIGCHLD included, also writes a byte to a socket the parent
//! polls (the self-pipe). SIGUSR1 (reopen the access log) is passed on to every child: each
//! writes its lines through its own copy of the file.
//! Relying on the signal to interrupt `epoll_wait` is not enough: a child that exits after the
//! parent last reaped but before it starts waiting would interrupt nothing, and its zombie would
//! stay until the next connection arrived. The byte stays in the socket until the wait sees it.
//! At shutdown the parent takes the connections already queued, stops accepting, passes the stop on
//! to its children, and waits, up to the drain time, for them to finish (those still running then
//! are told to end their connections, and killed if they have not within `ENDED_WITHIN`, as every
//! other mode ends its connections then). It tells them all at once in a byte of memory they share
//! (`Shutdown::tell_children`), which each child looks at before every step, and then wakes them
//! with a signal: on a stop it sends each child a SIGTERM, as a Ctrl-C would (it reaches the whole
//! process group, a `kill` of the parent does not): the child finishes a response in flight and
//! closes an idle connection at once, as every other mode does. (Until stop 33 it signalled none of
//! them, and a child holding an idle keep-alive connection kept the parent waiting until its
//! keep-alive timeout ran out: over 5 s by default, and with a longer timeout the parent left
//! before it.) On a handover (SIGHUP's upgrade) it sends each child a SIGHUP, which a child takes
//! as its own handover: it answers what it has received, the last answer with `Connection: close`,
//! and ends.
//!
//! What the children's connections hold of `--max-buffer-bytes` is counted in memory they share
//! too (`BufferBudget::share_with_children`), so the limit is the server's, as in every other
//! mode; each child also counts its own part in a slot the parent gives it, and the parent takes
//! back what is left in a child's slot as it reaps it, however the child ended.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGTERM, SIGUSR1};

use super::blocking::{self, Active, Refusal};
use super::reactor::REFUSING_MAX;
use super::shutdown::{STOP_SIGNALS, self_pipe};
use super::upgrade::Upgrade;
use super::{LoopEnv, Shared, Shutdown, Signals, io_util};
use crate::access_log::REOPEN_GENERATION;
use crate::http::BufferBudget;
use crate::session::Session;

const SIGNALED: Token = Token(0);
const UPGRADE: Token = Token(1);
/// The first listener's; the others' follow.
const LISTENERS: usize = 2;

/// How long a child still serving at the end of the drain time has to end its connection
/// itself before it is killed: within the 5 s a stop takes.
const ENDED_WITHIN: Duration = Duration::from_millis(250);

pub(crate) fn run<S: Session>(
    listeners: Vec<TcpListener>,
    setup: S::Setup,
    shared: Arc<Shared>,
    shutdown: Shutdown,
    upgrade: Option<(Upgrade, Arc<AtomicBool>)>,
) -> io::Result<()> {
    if threads_in_process()? != 1 {
        return Err(io::Error::other(
            "fork mode needs a single-threaded process (the reactor-httpd binary is one)",
        ));
    }
    // Signals set a flag and write a wake-up byte; nothing else runs in the handlers.
    // With `Server::stop_on_signals`, the flags were registered before the listening line was
    // printed, so a signal sent as soon as it is read finds them; the wake-up bytes start here.
    let (mut upgrade, hangup) = match upgrade {
        Some((upgrade, hangup)) => (Some(upgrade), hangup),
        None => (None, Arc::new(AtomicBool::new(false))),
    };
    let mut registered = Vec::new();
    if upgrade.is_none() {
        for signal in STOP_SIGNALS {
            registered.push(signal_hook::flag::register(signal, shutdown.flag())?);
        }
    }
    let (wake, pipe_registered) =
        self_pipe(&[&STOP_SIGNALS[..], &[SIGHUP, SIGCHLD, SIGUSR1]].concat())?;
    registered.extend(pipe_registered);
    wake.set_nonblocking(true)?;
    let mut wake = mio::net::UnixStream::from_std(wake);
    let mut poll = Poll::new()?;
    let mut listeners: Vec<_> = (listeners.into_iter())
        .map(mio::net::TcpListener::from_std)
        .collect();
    for (index, listener) in listeners.iter_mut().enumerate() {
        poll.registry()
            .register(listener, Token(LISTENERS + index), Interest::READABLE)?;
    }
    poll.registry()
        .register(&mut wake, SIGNALED, Interest::READABLE)?;
    let mut env = LoopEnv::waiting(shared.clone());
    // Before the first child: each inherits the shared byte a stop is told in, and the buffer
    // budget's counts.
    shutdown.share_with_children()?;
    let budget = shared.limits.buffers.clone();
    let slots = budget.share_with_children(shared.max_connections.min(Children::MOST))?;
    let mut events = Events::with_capacity(16);
    let mut children = Children::new(budget, slots);
    let mut paused_until: Option<Instant> = None;
    let mut trouble = io_util::AcceptTrouble::default();
    // The SIGUSR1 (a new access log file) last passed on to the children.
    let mut log_generation = REOPEN_GENERATION.load(Ordering::Relaxed);
    shared.announce_ready();

    loop {
        // A SIGHUP that came before the wake-up bytes were set up left only its flag; a stop
        // already asked for is seen at once.
        let hung_up = hangup.load(Ordering::SeqCst).then_some(Instant::now());
        let upgrade_due = upgrade.as_ref().and_then(Upgrade::deadline);
        let stopped = shutdown.is_triggered().then_some(Instant::now());
        let timeout = [paused_until, upgrade_due, hung_up, stopped]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(Instant::now()));
        if let Err(err) = poll.poll(&mut events, timeout) {
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        // Emptied before reaping: a child that exits after this leaves a byte for the next wait.
        Signals::drain(&wake);
        reap(&mut children, &env, upgrade.as_mut());
        // A child writes its log lines through its own copy of the file: each must reopen it
        // too, or a kept-alive connection goes on writing into the rotated file.
        let generation = REOPEN_GENERATION.load(Ordering::Relaxed);
        if generation != log_generation {
            log_generation = generation;
            env.reopen_log_if_asked();
            children.signal(SIGUSR1);
        }
        if let Some(upgrade) = &mut upgrade {
            if hangup.swap(false, Ordering::SeqCst)
                && let Some(fd) = upgrade.start(&shutdown)
                && let Err(err) =
                    poll.registry()
                        .register(&mut SourceFd(&fd), UPGRADE, Interest::READABLE)
            {
                eprintln!("reactor-httpd: cannot watch the new process: {err}");
            }
            // Readable, timed out, or a spurious wake-up: `check` tells them apart.
            upgrade.check(&shutdown);
        }
        // A stop first takes the connections the kernel has already completed, as the reactor
        // does: closing the listeners with them queued would reset them, requests and all
        // (until stop 84 it did, in most runs of a test that connects and signals at once).
        // Not on a handover: they are the new process's.
        let stopping = shutdown.is_triggered();
        if stopping && shutdown.is_handover() {
            break;
        }
        if !stopping && paused_until.is_some_and(|at| at > Instant::now()) {
            continue;
        }
        paused_until = None;
        // Edge-triggered: take every queued connection, on every listener.
        'listeners: for listener in &listeners {
            loop {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        trouble.accepted();
                        // Accepted sockets are non-blocking under mio; the child blocks.
                        let stream = into_std(stream);
                        let free = children.len() < shared.max_connections;
                        let slot = match free.then(|| children.take_slot()).flatten() {
                            Some(slot) => slot,
                            None => {
                                // Over TLS the 503 comes after a handshake, which the parent
                                // cannot wait on: a child of its own does it, up to
                                // `REFUSING_MAX` at once (the reactor's bound); past them, or
                                // with no process to be had, the connection is only closed.
                                if let Refusal::Needs(stream, conn) =
                                    blocking::refuse::<S>(stream, peer.ip(), &setup, &mut env)
                                    && children.refusing.len() < REFUSING_MAX
                                {
                                    let child = Child {
                                        inherited: Inherited::from_parent(
                                            &listeners,
                                            &poll,
                                            upgrade.as_ref(),
                                        ),
                                        task: Task::Refuse(conn),
                                    };
                                    let forked = fork_child(
                                        stream,
                                        peer.ip(),
                                        child,
                                        &setup,
                                        &shared,
                                        &shutdown,
                                    );
                                    if let Ok(pid) = forked {
                                        children.refusing.insert(pid);
                                    }
                                }
                                continue;
                            }
                        };
                        // Counted before the fork, in the counters the children share: a child may
                        // serve a scrape before this process runs again, and that scrape must count
                        // its own connection open, as in every other mode.
                        if let Some(metrics) = &env.metrics {
                            metrics.accepted.add(1);
                        }
                        let child = Child {
                            inherited: Inherited::from_parent(&listeners, &poll, upgrade.as_ref()),
                            task: Task::<S>::Serve(slot),
                        };
                        match fork_child(stream, peer.ip(), child, &setup, &shared, &shutdown) {
                            Ok(pid) => children.insert(pid, slot),
                            Err((err, stream)) => {
                                children.give_back(slot);
                                // Out of processes or memory: no child to serve it, so the client
                                // is told, as past --max-connections; wait before accepting more.
                                // Its connection was counted open: it is closed now.
                                if let Some(metrics) = &env.metrics {
                                    metrics.closed.add(1);
                                }
                                eprintln!("reactor-httpd: fork: {err}");
                                let _ = blocking::refuse::<S>(stream, peer.ip(), &setup, &mut env);
                                paused_until = Some(Instant::now() + io_util::ACCEPT_BACKOFF);
                                break 'listeners;
                            }
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if io_util::is_transient_accept_error(&err) => {
                        io_util::count_accept_error(env.metrics.as_deref(), false);
                    }
                    Err(err) => {
                        io_util::count_accept_error(env.metrics.as_deref(), true);
                        trouble.failed(&err);
                        paused_until = Some(Instant::now() + io_util::ACCEPT_BACKOFF);
                        break 'listeners;
                    }
                }
            }
        }
        if stopping {
            break;
        }
        env.flush_log_if_due();
    }

    // Stop accepting; give the children the drain time to finish what they serve. (On a
    // handover this closes only our copy: the new process serves the socket and its queue.)
    drop(listeners);
    // With our copies of the listeners (the flag set by a signal runs no shutdown hook).
    drop(upgrade);
    let drain = if shutdown.is_handover() {
        SIGHUP
    } else {
        SIGTERM
    };
    // Told in shared memory first, to every child at once; the signals wake those that wait.
    shutdown.tell_children();
    children.signal(drain);
    let mut wait_until = |deadline: Instant, children: &mut Children| {
        while !children.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Each child's exit writes a wake-up byte.
            let _ = poll.poll(&mut events, Some(left));
            Signals::drain(&wake);
            reap(children, &env, None);
        }
    };
    wait_until(Instant::now() + shutdown.grace(), &mut children);
    // Children still serving when the drain time is up (a download to a client that stalls, a
    // handler that blocks) are ended, as every other mode ends its connections at this point: a
    // stop does not live on in processes of ours. Each is told, and woken, to end its
    // connection itself, writing what it owes the access log (a download cut short, a request
    // never answered); one that has not within `ENDED_WITHIN` (a handler that blocks) is killed.
    if !children.is_empty() {
        shutdown.end();
        children.signal(drain);
        wait_until(Instant::now() + ENDED_WITHIN, &mut children);
    }
    end_children(&mut children, &env);
    for id in registered {
        signal_hook::low_level::unregister(id);
    }
    Ok(())
}

/// What a child is given besides its connection.
struct Child<S> {
    inherited: Inherited,
    task: Task<S>,
}

/// What a child does with its connection.
enum Task<S> {
    /// Serves it, counting what it holds in this slot of the buffer budget
    /// ([`BufferBudget::serve_as_child`]).
    Serve(usize),
    /// Answers it 503 past `--max-connections`, after the conversation this session needs first
    /// (a TLS handshake; [`Refusal::Needs`]). No slot: the answer holds no more than a
    /// connection's first buffers, which the budget does not count.
    Refuse(S),
}

/// The parent's descriptors a child must close: it serves one connection, nothing else.
struct Inherited {
    listeners: Vec<i32>,
    poll: i32,
    /// The upgrade's copies of the listener.
    upgrade: Vec<i32>,
}

impl Inherited {
    fn from_parent(
        listeners: &[mio::net::TcpListener],
        poll: &Poll,
        upgrade: Option<&Upgrade>,
    ) -> Inherited {
        Inherited {
            listeners: listeners.iter().map(AsRawFd::as_raw_fd).collect(),
            poll: poll.as_raw_fd(),
            upgrade: upgrade.map(Upgrade::listener_fds).unwrap_or_default(),
        }
    }
}

/// Forks a child to serve `stream` (or refuse it); returns its pid. In the parent, closes its
/// copy of the connection. If there can be no child, gives the connection back.
fn fork_child<S: Session>(
    stream: TcpStream,
    peer: IpAddr,
    child: Child<S>,
    setup: &S::Setup,
    shared: &Arc<Shared>,
    shutdown: &Shutdown,
) -> Result<libc::pid_t, (io::Error, TcpStream)> {
    S::before_fork(setup);
    // SAFETY: the parent is single-threaded (checked when `run` starts, and it starts no
    // threads), so the child is a consistent copy of it: no other thread can have been holding
    // a lock (malloc's, stdout's) at the moment of the fork. The child serves its connection
    // and leaves with `_exit`, never returning into the parent's code.
    match unsafe { libc::fork() } {
        -1 => Err((io::Error::last_os_error(), stream)),
        0 => serve_child::<S>(stream, peer, child, setup, shared, shutdown),
        pid => Ok(pid), // `stream` is dropped here: the parent's copy is closed
    }
}

/// The child: serves one connection (or refuses it), then exits.
fn serve_child<S: Session>(
    stream: TcpStream,
    peer: IpAddr,
    child: Child<S>,
    setup: &S::Setup,
    shared: &Arc<Shared>,
    shutdown: &Shutdown,
) -> ! {
    if let Task::Serve(slot) = child.task {
        shared.limits.buffers.serve_as_child(slot);
    }
    let inherited = child.inherited;
    // SAFETY: these descriptors were inherited from the parent and nothing in the child uses
    // them; the objects that own them in this copy of memory are never dropped (see `_exit`).
    unsafe {
        for fd in inherited.listeners {
            libc::close(fd);
        }
        libc::close(inherited.poll);
        for fd in inherited.upgrade {
            libc::close(fd);
        }
    }
    // The parent's SIGHUP means it has handed over: this copy's shutdown becomes a handover.
    // (Registered here, in a single-threaded copy of a single-threaded parent.) Handover flag
    // first, so the drain sees it with the shutdown flag.
    let _ = signal_hook::flag::register(SIGHUP, shutdown.handover_flag());
    let _ = signal_hook::flag::register(SIGHUP, shutdown.flag());
    let set_up = (stream.set_nonblocking(false), Active::new(&Shutdown::new()));
    let code = match set_up {
        (Ok(()), Ok(active)) => {
            let mut env = LoopEnv::new(shared.clone());
            // SIGTERM reaching the child (a Ctrl-C reaches the whole process group) sets this
            // copy's shutdown flag: the connection drains like in every other mode.
            match child.task {
                Task::Serve(_) => blocking::serve_connection::<S>(
                    stream, peer, setup, &mut env, &active, shutdown,
                ),
                Task::Refuse(conn) => {
                    blocking::serve_refusal(stream, peer, conn, &mut env, &active, shutdown)
                }
            }
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

/// The children serving connections, by pid, each with its slot in the buffer budget; and those
/// refusing one.
struct Children {
    by_pid: HashMap<libc::pid_t, usize>,
    /// Children answering 503 past `--max-connections` ([`Task::Refuse`]): not counted against
    /// it, nor as connections in the metrics (the refusal is counted as one).
    refusing: HashSet<libc::pid_t>,
    budget: Arc<BufferBudget>,
    /// Slots of children reaped, to give again; and the first never given.
    free: Vec<usize>,
    next: usize,
    slots: usize,
}

impl Children {
    /// No more children can be alive at once: Linux's largest pid (`PID_MAX_LIMIT`, 2^22).
    const MOST: usize = 1 << 22;

    fn new(budget: Arc<BufferBudget>, slots: usize) -> Self {
        Children {
            by_pid: HashMap::new(),
            refusing: HashSet::new(),
            budget,
            free: Vec::new(),
            next: 0,
            slots,
        }
    }

    fn len(&self) -> usize {
        self.by_pid.len()
    }

    fn is_empty(&self) -> bool {
        self.by_pid.is_empty() && self.refusing.is_empty()
    }

    /// A slot no child alive has, for the next (there are as many as `--max-connections`, so
    /// one is free whenever a connection may be served).
    fn take_slot(&mut self) -> Option<usize> {
        self.free.pop().or_else(|| {
            let slot = self.next;
            (slot < self.slots).then(|| {
                self.next += 1;
                slot
            })
        })
    }

    /// A slot taken for a child that could not be forked.
    fn give_back(&mut self, slot: usize) {
        self.free.push(slot);
    }

    /// A child was forked with `slot`.
    fn insert(&mut self, pid: libc::pid_t, slot: usize) {
        self.by_pid.insert(pid, slot);
    }

    /// A child has been reaped: what it held of the budget is taken back, and its slot given
    /// again. Whether it was serving a connection, refusing one, or not one of them (an
    /// upgrade's new process).
    fn exited(&mut self, pid: libc::pid_t) -> Reaped {
        if self.refusing.remove(&pid) {
            return Reaped::Refusal;
        }
        let Some(slot) = self.by_pid.remove(&pid) else {
            return Reaped::NotOurs;
        };
        self.budget.child_exited(slot);
        self.free.push(slot);
        Reaped::Connection
    }

    fn pids(&self) -> impl Iterator<Item = libc::pid_t> + '_ {
        self.by_pid.keys().chain(&self.refusing).copied()
    }

    /// Passes `signal` on to every child: a signal sent to the parent reaches only the parent.
    fn signal(&self, signal: libc::c_int) {
        for pid in self.pids() {
            // SAFETY: kill(2) on a child of ours that has not been reaped, so the pid is its.
            unsafe { libc::kill(pid, signal) };
        }
    }
}

/// Which child [`Children::exited`] found.
#[derive(PartialEq)]
enum Reaped {
    Connection,
    Refusal,
    NotOurs,
}

/// Kills the children left and reaps each, counting its connection closed.
fn end_children(children: &mut Children, env: &LoopEnv) {
    children.signal(libc::SIGKILL);
    let pids: Vec<_> = children.pids().collect();
    for pid in pids {
        // SAFETY: waitpid on a child of ours, just killed: it returns once the child is gone.
        while unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) } < 0
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
        ended(children, pid, env);
    }
}

/// Takes the reaped `pid` out of `children`, counting its connection closed if it served one.
fn ended(children: &mut Children, pid: libc::pid_t, env: &LoopEnv) -> Reaped {
    let reaped = children.exited(pid);
    if reaped == Reaped::Connection
        && let Some(metrics) = &env.metrics
    {
        metrics.closed.add(1);
    }
    reaped
}

/// Reaps every child that has exited, without blocking, and takes it out of `children`.
/// The new process of an upgrade is a child too: reaped here if it ends, and how it ended is
/// passed to the `Upgrade` under way, to say (it then finds it gone).
/// Each child's connection is counted closed here, in the loop's metrics, however the child
/// ended.
fn reap(children: &mut Children, env: &LoopEnv, mut upgrade: Option<&mut Upgrade>) {
    io_util::reap_exited(|pid, status| {
        // Not a connection's child: the new process of an upgrade, under way or done.
        if ended(children, pid, env) == Reaped::NotOurs
            && let Some(upgrade) = upgrade.as_deref_mut()
        {
            upgrade.reaped(pid as u32, ExitStatus::from_raw(status));
        }
    });
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
