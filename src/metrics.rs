//! Per-loop counters, and their Prometheus text (`--metrics-path`).
//!
//! Each event loop (or worker thread) owns one [`LoopMetrics`] and is the only one to write it:
//! a counter goes up by a relaxed load and a store of its own cache line, with no locked
//! instruction and no line shared with another core. A scrape reads every loop's counters
//! (relaxed loads: each value is a moment's, which is all a counter promises) and prints each
//! family once, with one series per loop (label `loop`), as the text format 0.0.4 requires: a
//! family's series must stand together, after its one HELP and TYPE.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// A counter on a cache line (or two) of its own: two loops' counters never share a line, even
/// with the prefetcher pulling lines in pairs (128 bytes, as crossbeam pads on x86_64).
#[repr(align(128))]
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning loop calls this: a load and a store suffice.
    #[inline]
    pub fn add(&self, n: u64) {
        let value = self.0.load(Ordering::Relaxed);
        self.0.store(value.wrapping_add(n), Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
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
        "Bytes of responses, heads and bodies, counted as they are queued to go out.",
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
        "Connections refused with 503 past --max-connections.",
        None,
        |m, _| m.refused.get(),
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
#[derive(Default)]
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
    pub accept_errors: Counter,
    /// Times accepting stopped for want of descriptors or memory.
    pub accept_pauses: Counter,
    pub handler_panics: Counter,
}

impl LoopMetrics {
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
}

/// Every loop's counters, for a scrape, and what describes the process.
pub struct Registry {
    loops: Mutex<Vec<Arc<LoopMetrics>>>,
    mode: &'static str,
    started: f64,
}

impl Registry {
    pub fn new(mode: &'static str) -> Self {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Registry {
            loops: Mutex::new(Vec::new()),
            mode,
            started,
        }
    }

    /// A new loop's counters, numbered in the order loops (or workers) start. The lock is taken
    /// here and at a scrape, never while serving.
    pub fn register(&self) -> Arc<LoopMetrics> {
        let metrics = Arc::new(LoopMetrics::default());
        (self.loops.lock().unwrap_or_else(PoisonError::into_inner)).push(metrics.clone());
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

    #[test]
    fn families_stand_together_once_each() {
        let registry = Registry::new("reactor");
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
