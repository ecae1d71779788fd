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

    let mut refusing = Refusing::default();
    let mut env = LoopEnv::waiting(shared.clone());
    let metrics = env.metrics.clone();
    let mut dispatch = |stream: TcpStream, peer: IpAddr| {
        if shared.open.fetch_add(1, Ordering::Relaxed) >= shared.max_connections {
            shared.open.fetch_sub(1, Ordering::Relaxed);
            if let Refusal::Needs(stream, conn) =
                blocking::refuse::<S>(stream, peer, &setup, &mut env)
            {
                refusing.answer(stream, peer, conn, &shared, &active, &shutdown);
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
    refusing.join();
    super::join_all(workers, "worker", accepted)
}
// ANCHOR_END: threaded_run

/// The threads answering refusals that need a conversation first (a TLS handshake before the
/// 503): one each, which may wait on its client as a worker does, up to `REFUSING_MAX` at once
/// (the reactor's bound); past them, or with no thread to be had, a refusal is closed
/// unanswered. (One thread took them in turn until stop 77: a client that stalled its handshake
/// held every 503 behind it for the header timeout.)
#[derive(Default)]
struct Refusing(Vec<thread::JoinHandle<()>>);

impl Refusing {
    fn answer<S: Session>(
        &mut self,
        stream: TcpStream,
        peer: IpAddr,
        conn: S,
        shared: &Arc<Shared>,
        active: &Arc<Active>,
        shutdown: &Shutdown,
    ) {
        self.0.retain(|refusal| !refusal.is_finished());
        if self.0.len() >= REFUSING_MAX {
            return;
        }
        let (shared, active, shutdown) = (shared.clone(), active.clone(), shutdown.clone());
        let refusal = thread::Builder::new()
            .name("refusing".into())
            .spawn(move || {
                let mut env = LoopEnv::waiting(shared);
                blocking::serve_refusal(stream, peer, conn, &mut env, &active, &shutdown);
            });
        self.0.extend(refusal.ok());
    }

    fn join(self) {
        for refusal in self.0 {
            let _ = refusal.join();
        }
    }
}
