//! A thread pool: one acceptor feeding a bounded queue, drained by `--threads` blocking workers.
//!
//! Each worker takes a connection and serves it until it closes (keep-alive included), with the
//! same `blocking::serve_connection` the single-threaded mode uses. While every worker is busy,
//! accepted connections wait in the queue; when the queue is full the acceptor blocks, and new
//! connections wait in the kernel's backlog instead of in server memory. The price of the model
//! shows with keep-alive: a worker stays with its connection while the connection is idle, so
//! more open connections than workers means the rest wait their turn, however little they ask.

use std::io;
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;
use std::time::Instant;

use super::blocking::{self, Acceptor, Active, Refusal};
use super::reactor::REFUSING_MAX;
use super::{LoopEnv, Shared, Shutdown};
use crate::session::Session;

// ANCHOR: threaded_run
pub(crate) fn run<S: Session>(
    listeners: Vec<TcpListener>,
    setup: S::Setup,
    threads: usize,
    shared: Arc<Shared>,
    shutdown: Shutdown,
) -> io::Result<()> {
    let active = Active::new(&shutdown)?;
    let (queue, jobs) = mpsc::sync_channel::<(TcpStream, IpAddr)>(threads);
    let jobs = Arc::new(Mutex::new(jobs));
    let mut workers = Vec::with_capacity(threads);
    for index in 0..threads {
        let (jobs, shared, active, shutdown, setup) = (
            jobs.clone(),
            shared.clone(),
            active.clone(),
            shutdown.clone(),
            setup.clone(),
        );
        let worker = thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || -> io::Result<()> {
                let mut env = LoopEnv::waiting(shared.clone());
                loop {
                    // The lock is held only while waiting for the next connection.
                    let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok((stream, peer)) = job else {
                        return Ok(()); // the acceptor is gone: shutdown
                    };
                    blocking::serve_counted::<S>(
                        stream,
                        peer,
                        &setup,
                        &mut env,
                        &active,
                        &shutdown,
                        Some(&shared.open),
                    );
                }
            })
            .map_err(super::cannot_make("worker thread", index + 1, threads))?;
        workers.push(worker);
    }

    // Refusals that need a conversation first (a TLS handshake before the 503) go to a thread
    // of their own, which may wait on each client as a worker does; past the ones it has
    // waiting, they are closed unanswered, as the reactor does past `REFUSING_MAX`.
    let (refusals, refused) = mpsc::sync_channel::<(TcpStream, IpAddr, S)>(REFUSING_MAX);
    let refuser = {
        let (shared, active, shutdown) = (shared.clone(), active.clone(), shutdown.clone());
        thread::Builder::new()
            .name("refuser".into())
            .spawn(move || -> io::Result<()> {
                let mut env = LoopEnv::waiting(shared);
                for (stream, peer, conn) in refused {
                    blocking::serve_refusal(stream, peer, conn, &mut env, &active, &shutdown);
                }
                Ok(())
            })
            .map_err(super::cannot_make("refusing thread", 1, 1))?
    };
    workers.push(refuser);

    let mut env = LoopEnv::waiting(shared.clone());
    let metrics = env.metrics.clone();
    let mut dispatch = |stream: TcpStream, peer: IpAddr| {
        if shared.open.fetch_add(1, Ordering::Relaxed) >= shared.max_connections {
            shared.open.fetch_sub(1, Ordering::Relaxed);
            if let Refusal::Needs(stream, conn) =
                blocking::refuse::<S>(stream, peer, &setup, &mut env)
            {
                let _ = refusals.try_send((stream, peer, conn));
            }
        } else {
            // Blocks while the queue is full: the acceptor stops, the backlog holds the rest.
            let _ = queue.send((stream, peer));
        }
    };
    let mut acceptor = Acceptor::new(listeners);
    shared.announce_ready();
    let accepted = loop {
        match acceptor.accept(&active, &shutdown, metrics.as_deref()) {
            Ok(Some((stream, peer))) => dispatch(stream, peer),
            Ok(None) => break Ok(()),
            Err(err) => {
                shutdown.trigger();
                break Err(err);
            }
        }
    };
    let since = Instant::now();
    for (stream, peer) in acceptor.backlog(&shutdown, since) {
        dispatch(stream, peer);
    }
    drop(queue);
    drop(refusals);
    super::join_all(workers, "worker", accepted)
}
// ANCHOR_END: threaded_run
