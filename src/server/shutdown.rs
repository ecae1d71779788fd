//! The shutdown handle: one flag, and a way to wake every loop or thread that waits.
//!
//! `main.rs` triggers it on SIGINT or SIGTERM; tests trigger it directly. Each driver registers a
//! wake-up (the reactor: its `mio::Waker`) so that a loop asleep in `poll` notices at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long in-flight requests get to finish after a shutdown is requested. The contract says
/// the process exits within 5 s; this leaves a margin.
pub const DRAIN_GRACE: Duration = Duration::from_secs(4);

type Wake = Box<dyn Fn() + Send + Sync>;

#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Shared as an `Arc` so a signal handler can set it directly (the fork mode's parent).
    requested: Arc<AtomicBool>,
    wakers: Mutex<Vec<Wake>>,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Asks the server to stop: it stops accepting, finishes what is in flight, and returns.
    /// Only the first call does anything: the wake-ups run once.
    pub fn trigger(&self) {
        if self.inner.requested.swap(true, Ordering::SeqCst) {
            return;
        }
        let wakers = self
            .inner
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for wake in wakers.iter() {
            wake();
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// The flag itself, for a signal handler to set. Setting it wakes nobody: only for a driver
    /// whose wait any signal interrupts.
    pub(crate) fn flag(&self) -> Arc<AtomicBool> {
        self.inner.requested.clone()
    }

    /// Registers how to wake a waiting loop. Called at once if shutdown was already requested.
    pub(crate) fn on_trigger(&self, wake: impl Fn() + Send + Sync + 'static) {
        let mut wakers = self
            .inner
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.is_triggered() {
            wake();
        }
        wakers.push(Box::new(wake));
    }
}
