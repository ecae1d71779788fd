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

const TIMEOUTS: [(Timeout, &str); 5] = [
    (Timeout::Header, "header"),
    (Timeout::Body, "body"),
    (Timeout::KeepAlive, "keep_alive"),
    (Timeout::Send, "send"),
    (Timeout::Handler, "handler"),
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
    /// The Prometheus text exposition (format 0.0.4) of every counter.
    pub fn render(&self) -> String {
        let loops = self
            .loops
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = String::with_capacity(4096);
        let mut family =
            |name: &str, kind: &str, help: &str, series: &mut dyn FnMut(&mut String)| {
                let _ = writeln!(out, "# HELP reactor_httpd_{name} {help}");
                let _ = writeln!(out, "# TYPE reactor_httpd_{name} {kind}");
                series(&mut out);
            };
        // One series per loop, for a counter read the same way from each.
        let per_loop = |name: &'static str, read: fn(&LoopMetrics) -> u64| {
            let loops = loops.clone();
            move |out: &mut String| {
                for (index, metrics) in loops.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "reactor_httpd_{name}{{loop=\"{index}\"}} {}",
                        read(metrics)
                    );
                }
            }
        };
        family(
            "start_time_seconds",
            "gauge",
            "When the process started, in seconds since the Unix epoch.",
            &mut |out| {
                let _ = writeln!(out, "reactor_httpd_start_time_seconds {:.3}", self.started);
            },
        );
        family(
            "info",
            "gauge",
            "The concurrency model and the number of loops (or workers).",
            &mut |out| {
                let _ = writeln!(
                    out,
                    "reactor_httpd_info{{mode=\"{}\",loops=\"{}\"}} 1",
                    self.mode,
                    loops.len()
                );
            },
        );
        family(
            "connections_accepted_total",
            "counter",
            "Connections accepted.",
            &mut per_loop("connections_accepted_total", |m| m.accepted.get()),
        );
        family(
            "connections_open",
            "gauge",
            "Connections open now.",
            &mut per_loop("connections_open", |m| {
                m.accepted.get().saturating_sub(m.closed.get())
            }),
        );
        family(
            "requests_total",
            "counter",
            "Requests answered (each pipelined request counts).",
            &mut per_loop("requests_total", |m| m.requests.get()),
        );
        family(
            "responses_total",
            "counter",
            "Responses by status class.",
            &mut |out| {
                for (index, metrics) in loops.iter().enumerate() {
                    for (class, counter) in metrics.responses.iter().enumerate() {
                        let _ = writeln!(
                            out,
                            "reactor_httpd_responses_total{{loop=\"{index}\",class=\"{}xx\"}} {}",
                            class + 1,
                            counter.get()
                        );
                    }
                }
            },
        );
        family(
            "sent_bytes_total",
            "counter",
            "Bytes of responses, heads and bodies, counted as they are queued to go out.",
            &mut per_loop("sent_bytes_total", |m| m.bytes_sent.get()),
        );
        family(
            "timeouts_total",
            "counter",
            "Connections whose timer ran out, by kind.",
            &mut |out| {
                for (index, metrics) in loops.iter().enumerate() {
                    for (kind, name) in TIMEOUTS {
                        let _ = writeln!(
                            out,
                            "reactor_httpd_timeouts_total{{loop=\"{index}\",kind=\"{name}\"}} {}",
                            metrics.timeouts[kind as usize].get()
                        );
                    }
                }
            },
        );
        family(
            "refused_total",
            "counter",
            "Connections refused with 503 past --max-connections.",
            &mut per_loop("refused_total", |m| m.refused.get()),
        );
        family(
            "accept_errors_total",
            "counter",
            "accept(2) failures other than would-block.",
            &mut per_loop("accept_errors_total", |m| m.accept_errors.get()),
        );
        family(
            "accept_pauses_total",
            "counter",
            "Times accepting paused for want of descriptors or memory.",
            &mut per_loop("accept_pauses_total", |m| m.accept_pauses.get()),
        );
        family(
            "handler_panics_total",
            "counter",
            "Handlers that panicked (each answered 500).",
            &mut per_loop("handler_panics_total", |m| m.handler_panics.get()),
        );
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
