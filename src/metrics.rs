//! Per-loop counters, and their Prometheus text (`--metrics-path`).
//!
//! Each event loop (or worker thread) owns one [`LoopMetrics`] and is the only one to write it:
//! a counter goes up by a relaxed load and a store of its own cache line, with no locked
//! instruction and no line shared with another core. A scrape reads every loop's counters
//! (relaxed loads: each value is a moment's, which is all a counter promises) and prints each
//! family once, with one series per loop (label `loop`), as the text format 0.0.4 requires: a
//! family's series must stand together, after its one HELP and TYPE.
//!
//! Fork mode is the exception. Its loop is the parent's, but the requests are served by children,
//! each in memory of its own: counters they kept privately would be lost when they exit, and a
//! scrape (answered by whichever child has the scraping connection) would see only its own. So
//! there the one [`LoopMetrics`] lives in a mapping shared with every child, made before the first
//! fork, and its counters go up by locked adds, since many processes write them at once.

use std::fmt::Write as _;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::http::BufferBudget;
use crate::server::io_util::SharedMapped;

/// A counter on a cache line (or two) of its own: two loops' counters never share a line, even
/// with the prefetcher pulling lines in pairs (128 bytes, as crossbeam pads on x86_64).
#[repr(align(128))]
pub struct Counter {
    value: AtomicU64,
    /// Written by more than one process (fork mode): each add must be one locked instruction.
    shared: bool,
}

impl Counter {
    fn new(shared: bool) -> Self {
        Counter {
            value: AtomicU64::new(0),
            shared,
        }
    }

    /// Adds `n`. Only the owning loop calls this, so a load and a store suffice, unless other
    /// processes write the counter too.
    #[inline]
    pub fn add(&self, n: u64) {
        if self.shared {
            self.value.fetch_add(n, Ordering::Relaxed);
        } else {
            let value = self.value.load(Ordering::Relaxed);
            self.value.store(value.wrapping_add(n), Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// Why a connection's timer ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    Header,
    Body,
    KeepAlive,
    Send,
    Handler,
}

/// A family of per-loop series: name, type, help, a second label with its values (class,
/// kind) if it has one, and how to read the series at that label's index.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    Option<(&'static str, &'static [&'static str])>,
    fn(&LoopMetrics, usize) -> u64,
);

const FAMILIES: &[Family] = &[
    (
        "connections_accepted_total",
        "counter",
        "Connections accepted.",
        None,
        |m, _| m.accepted.get(),
    ),
    (
        "connections_open",
        "gauge",
        "Connections open now.",
        None,
        |m, _| m.accepted.get().saturating_sub(m.closed.get()),
    ),
    (
        "requests_total",
        "counter",
        "Requests answered (each pipelined request counts).",
        None,
        |m, _| m.requests.get(),
    ),
    (
        "responses_total",
        "counter",
        "Responses by status class.",
        Some(("class", &["1xx", "2xx", "3xx", "4xx", "5xx"])),
        |m, class| m.responses[class].get(),
    ),
    (
        "sent_bytes_total",
        "counter",
        "Bytes of responses, heads and bodies: a head and a body made in memory counted as they \
         are queued to go out, a body sent after its head (a file, ranges, a listing, a \
         compressed stream) when it ends, with the bytes of it that went.",
        None,
        |m, _| m.bytes_sent.get(),
    ),
    (
        "timeouts_total",
        "counter",
        "Connections whose timer ran out, by kind.",
        // In the order of `Timeout`.
        Some(("kind", &["header", "body", "keep_alive", "send", "handler"])),
        |m, kind| m.timeouts[kind].get(),
    ),
    (
        "refused_total",
        "counter",
        "Connections refused with 503: past --max-connections, or (fork mode) no process to \
         serve them.",
        None,
        |m, _| m.refused.get(),
    ),
    (
        "buffer_refused_total",
        "counter",
        "Requests refused with 503 because the connections' buffers together held \
         --max-buffer-bytes.",
        None,
        |m, _| m.buffer_refused.get(),
    ),
    (
        "accept_errors_total",
        "counter",
        "accept(2) failures other than would-block.",
        None,
        |m, _| m.accept_errors.get(),
    ),
    (
        "accept_pauses_total",
        "counter",
        "Times accepting paused for want of descriptors or memory.",
        None,
        |m, _| m.accept_pauses.get(),
    ),
    (
        "handler_panics_total",
        "counter",
        "Handlers that panicked (each answered 500).",
        None,
        |m, _| m.handler_panics.get(),
    ),
];

/// One loop's counters.
pub struct LoopMetrics {
    pub accepted: Counter,
    pub closed: Counter,
    pub requests: Counter,
    /// Responses by status class: 1xx (interim 100 Continue not counted) to 5xx.
    pub responses: [Counter; 5],
    pub bytes_sent: Counter,
    pub timeouts: [Counter; 5],
    /// Connections refused with 503 past `--max-connections`.
    pub refused: Counter,
    /// Requests refused with 503 for want of buffer budget (`--max-buffer-bytes`).
    pub buffer_refused: Counter,
    pub accept_errors: Counter,
    /// Times accepting stopped for want of descriptors or memory.
    pub accept_pauses: Counter,
    pub handler_panics: Counter,
}

impl LoopMetrics {
    /// Counters that start at zero; `shared`: other processes write them too.
    fn new(shared: bool) -> Self {
        let counter = || Counter::new(shared);
        LoopMetrics {
            accepted: counter(),
            closed: counter(),
            requests: counter(),
            responses: std::array::from_fn(|_| counter()),
            bytes_sent: counter(),
            timeouts: std::array::from_fn(|_| counter()),
            refused: counter(),
            buffer_refused: counter(),
            accept_errors: counter(),
            accept_pauses: counter(),
            handler_panics: counter(),
        }
    }

    /// A response with `status` went into the output (the request it answers counted too, when
    /// there is one).
    #[inline]
    pub fn responded(&self, status: u16, for_a_request: bool) {
        if for_a_request {
            self.requests.add(1);
        }
        if let Some(class) = self
            .responses
            .get(usize::from(status / 100).wrapping_sub(1))
        {
            class.add(1);
        }
    }

    pub fn timed_out(&self, kind: Timeout) {
        self.timeouts[kind as usize].add(1);
    }

    pub fn over_budget(&self) {
        self.buffer_refused.add(1);
    }
}

/// One loop's counters, as the loop holds them: on the heap, or in a mapping shared with other
/// processes.
#[derive(Clone)]
pub struct Metrics(Arc<Place>);

// Made once per loop and kept behind the `Arc`: its size costs nothing.
#[allow(clippy::large_enum_variant)]
enum Place {
    Own(LoopMetrics),
    /// Fork mode: in memory mapped shared, so a child forked after it was made writes the same
    /// physical pages as its parent and every other child.
    Mapped(SharedMapped<LoopMetrics>),
}

impl Deref for Metrics {
    type Target = LoopMetrics;

    fn deref(&self) -> &LoopMetrics {
        match &*self.0 {
            Place::Own(metrics) => metrics,
            Place::Mapped(mapping) => mapping,
        }
    }
}

/// Every loop's counters, for a scrape, and what describes the process.
pub struct Registry {
    loops: Mutex<Vec<Metrics>>,
    mode: &'static str,
    started: f64,
    /// Fork mode: one set of counters, shared by the parent and every child.
    across_processes: bool,
    /// `--max-buffer-bytes`, and what is held of it (in fork mode, by every child: they share
    /// its counts).
    buffers: Arc<BufferBudget>,
    /// `--max-connections`: given, or what the memory allows.
    max_connections: usize,
}

impl Registry {
    /// `across_processes`: the loop forks children that serve its connections (fork mode).
    pub fn new(
        mode: &'static str,
        across_processes: bool,
        buffers: Arc<BufferBudget>,
        max_connections: usize,
    ) -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Registry {
            loops: Mutex::new(Vec::new()),
            mode,
            started,
            across_processes,
            buffers,
            max_connections,
        }
    }

    /// A new loop's counters, numbered in the order loops (or workers) start. The lock is taken
    /// here and at a scrape, never while serving. Across processes there is one set: the first
    /// call (the parent's loop, before any fork) maps it, and a child's call finds it in its
    /// copy of the registry and shares it.
    pub fn register(&self) -> Metrics {
        let mut loops = self.loops.lock().unwrap_or_else(PoisonError::into_inner);
        if self.across_processes
            && let Some(first) = loops.first()
        {
            return first.clone();
        }
        let place = match self.across_processes {
            // Out of memory for one page: counted per process, as the only way left.
            true => SharedMapped::new(LoopMetrics::new(true))
                .map_or_else(|_| Place::Own(LoopMetrics::new(false)), Place::Mapped),
            false => Place::Own(LoopMetrics::new(false)),
        };
        let metrics = Metrics(Arc::new(place));
        loops.push(metrics.clone());
        metrics
    }

    // ANCHOR: exposition
    /// The Prometheus text exposition (format 0.0.4) of every counter: each family's HELP and
    /// TYPE once, then all its series, one per loop (and per class or kind).
    pub fn render(&self) -> String {
        let loops = self
            .loops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP reactor_httpd_start_time_seconds When the process started, in seconds since \
             the Unix epoch.\n# TYPE reactor_httpd_start_time_seconds gauge\n\
             reactor_httpd_start_time_seconds {:.3}",
            self.started
        );
        let _ = writeln!(
            out,
            "# HELP reactor_httpd_info The concurrency model and the number of loops (or \
             workers).\n# TYPE reactor_httpd_info gauge\n\
             reactor_httpd_info{{mode=\"{}\",loops=\"{}\"}} 1",
            self.mode,
            loops.len()
        );
        let _ = writeln!(
            out,
            "# HELP reactor_httpd_connections_limit --max-connections: past it, a connection \
             gets 503 and is closed.\n# TYPE reactor_httpd_connections_limit gauge\n\
             reactor_httpd_connections_limit {}",
            self.max_connections
        );
        let _ = writeln!(
            out,
            "# HELP reactor_httpd_buffered_bytes What connections' buffers hold beyond their \
             first 8 KiB each (request bodies arriving, responses waiting to be sent), with \
             compressing encoders and listings being sent, all loops together.\n\
             # TYPE reactor_httpd_buffered_bytes gauge\n\
             reactor_httpd_buffered_bytes {}\n\
             # HELP reactor_httpd_buffered_limit_bytes --max-buffer-bytes: a request body that \
             needs more than is left gets 503.\n# TYPE reactor_httpd_buffered_limit_bytes gauge\n\
             reactor_httpd_buffered_limit_bytes {}\n\
             # HELP reactor_httpd_buffer_declined_total Times --max-buffer-bytes had no room: a \
             request refused (a body, the handler pool's copy, a listing) or a file sent without \
             the coding first asked for, all loops together.\n\
             # TYPE reactor_httpd_buffer_declined_total counter\n\
             reactor_httpd_buffer_declined_total {}",
            self.buffers.held(),
            self.buffers.limit(),
            self.buffers.declined()
        );
        for (name, kind, help, label, read) in FAMILIES {
            let _ = writeln!(out, "# HELP reactor_httpd_{name} {help}");
            let _ = writeln!(out, "# TYPE reactor_httpd_{name} {kind}");
            for (index, metrics) in loops.iter().enumerate() {
                match label {
                    None => {
                        let value = read(metrics, 0);
                        let _ = writeln!(out, "reactor_httpd_{name}{{loop=\"{index}\"}} {value}");
                    }
                    Some((label, values)) => {
                        for (at, value_name) in values.iter().enumerate() {
                            let value = read(metrics, at);
                            let _ = writeln!(
                                out,
                                "reactor_httpd_{name}{{loop=\"{index}\",{label}=\"{value_name}\"}} {value}"
                            );
                        }
                    }
                }
            }
        }
        out
    }
    // ANCHOR_END: exposition
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_own_their_lines() {
        assert_eq!(std::mem::align_of::<Counter>(), 128);
        assert_eq!(std::mem::size_of::<Counter>(), 128);
    }

    /// Across processes: one set of counters, and what a forked child adds, the parent reads.
    #[test]
    fn shared_counters_are_written_by_children() {
        let registry = Registry::new("fork", true, BufferBudget::new(0), 10);
        let parent = registry.register();
        parent.accepted.add(1);
        // SAFETY: the child only takes the registry's lock (held by no other thread: this
        // registry is the test's own), adds, and leaves with `_exit`.
        match unsafe { libc::fork() } {
            0 => {
                let child = registry.register();
                child.requests.add(5);
                child.accepted.add(1);
                unsafe { libc::_exit(0) };
            }
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            pid => {
                let mut status = 0;
                // SAFETY: waits for the child just forked.
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
                assert_eq!(status, 0);
            }
        }
        assert_eq!(parent.requests.get(), 5);
        assert_eq!(parent.accepted.get(), 2);
        let text = registry.render();
        assert!(text.contains("reactor_httpd_info{mode=\"fork\",loops=\"1\"} 1\n"));
        assert!(text.contains("reactor_httpd_requests_total{loop=\"0\"} 5\n"));
    }

    #[test]
    fn families_stand_together_once_each() {
        let registry = Registry::new("reactor", false, BufferBudget::new(0), 10);
        let (a, b) = (registry.register(), registry.register());
        a.accepted.add(3);
        a.closed.add(1);
        a.responded(200, true);
        a.responded(404, true);
        b.responded(503, false);
        b.timed_out(Timeout::KeepAlive);
        let text = registry.render();
        assert!(text.ends_with('\n'));
        assert!(text.contains("reactor_httpd_connections_open{loop=\"0\"} 2\n"));
        assert!(text.contains("reactor_httpd_requests_total{loop=\"0\"} 2\n"));
        assert!(text.contains("reactor_httpd_responses_total{loop=\"0\",class=\"4xx\"} 1\n"));
        assert!(text.contains("reactor_httpd_responses_total{loop=\"1\",class=\"5xx\"} 1\n"));
        assert!(text.contains("reactor_httpd_timeouts_total{loop=\"1\",kind=\"keep_alive\"} 1\n"));
        assert!(text.contains("reactor_httpd_info{mode=\"reactor\",loops=\"2\"} 1\n"));
        // Each family's TYPE once, and all its samples right after it.
        let mut seen = Vec::new();
        let mut current = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap();
                assert!(!seen.contains(&current), "{current} twice");
                seen.push(current);
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "{line} outside its family");
            }
        }
    }
}
