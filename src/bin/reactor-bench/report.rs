//! What a load run measured, and how it is printed: as text for people, as JSON for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Failures, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Errors {
    /// A connection could not be opened.
    pub connect: u64,
    /// Of those, refused (nothing listening: ECONNREFUSED).
    pub refused: u64,
    /// A connection failed or closed with requests unanswered, or sent a malformed response.
    pub read: u64,
    /// Of those, reset by the server (ECONNRESET).
    pub reset: u64,
    /// A response whose status was not 2xx or 3xx.
    pub status: u64,
    /// A request unanswered within the timeout.
    pub timeout: u64,
}

impl Errors {
    pub fn add(&mut self, other: &Errors) {
        self.connect += other.connect;
        self.refused += other.refused;
        self.read += other.read;
        self.reset += other.reset;
        self.status += other.status;
        self.timeout += other.timeout;
    }

    pub fn connect_failed(&mut self, err: &std::io::Error) {
        self.connect += 1;
        self.refused += u64::from(err.kind() == std::io::ErrorKind::ConnectionRefused);
    }

    pub fn read_failed(&mut self, err: &std::io::Error) {
        self.read += 1;
        self.reset += u64::from(err.kind() == std::io::ErrorKind::ConnectionReset);
    }

    pub fn total(&self) -> u64 {
        self.connect + self.read + self.status + self.timeout
    }
}

/// The result of one run (one thread's share, or all of them merged).
pub struct Report {
    /// Responses received within the run.
    pub responses: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Microseconds, from the (intended) send of a request to the end of its response.
    pub latency: Histogram<u64>,
    pub errors: Errors,
}

impl Report {
    pub fn new() -> Report {
        Report {
            responses: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
            // 1 µs to 1 h at 3 significant digits.
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            errors: Errors::default(),
        }
    }

    pub fn merge(&mut self, other: &Report) {
        self.responses += other.responses;
        self.bytes += other.bytes;
        self.elapsed = self.elapsed.max(other.elapsed);
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        self.errors.add(&other.errors);
    }

    pub fn requests_per_sec(&self) -> f64 {
        self.responses as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency percentile, in microseconds.
    pub fn percentile_us(&self, percentile: f64) -> u64 {
        self.latency.value_at_quantile(percentile / 100.0)
    }

    pub fn text(&self, what: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{what}");
        let _ = writeln!(
            out,
            "  requests  {} in {:.2} s = {:.1}/s    transfer {}/s",
            self.responses,
            self.elapsed.as_secs_f64(),
            self.requests_per_sec(),
            human_bytes(self.bytes_per_sec())
        );
        let _ = writeln!(
            out,
            "  latency   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            human_us(self.percentile_us(50.0)),
            human_us(self.percentile_us(90.0)),
            human_us(self.percentile_us(99.0)),
            human_us(self.percentile_us(99.9)),
            human_us(self.latency.max())
        );
        let e = &self.errors;
        let _ = writeln!(
            out,
            "  errors    connect {} (refused {})  read {} (reset {})  status {}  timeout {}",
            e.connect, e.refused, e.read, e.reset, e.status, e.timeout
        );
        out
    }

    pub fn json(&self, url: &str, connections: usize, pipeline: usize) -> String {
        let e = &self.errors;
        format!(
            "{{\"url\":{},\"connections\":{connections},\"pipeline\":{pipeline},\"duration_s\":{:.3},\
             \"requests\":{},\"requests_per_s\":{:.1},\"bytes\":{},\"bytes_per_s\":{:.1},\
             \"latency_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{}}},\
             \"errors\":{{\"connect\":{},\"refused\":{},\"read\":{},\"reset\":{},\"status\":{},\"timeout\":{}}}}}",
            json_string(url),
            self.elapsed.as_secs_f64(),
            self.responses,
            self.requests_per_sec(),
            self.bytes,
            self.bytes_per_sec(),
            self.percentile_us(50.0),
            self.percentile_us(90.0),
            self.percentile_us(99.0),
            self.percentile_us(99.9),
            self.latency.max(),
            e.connect,
            e.refused,
            e.read,
            e.reset,
            e.status,
            e.timeout
        )
    }
}

pub fn human_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.2} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_us(999), "999 µs");
        assert_eq!(human_us(1500), "1.50 ms");
        assert_eq!(human_us(2_500_000), "2.50 s");
        assert_eq!(human_bytes(2048.0), "2.0 KiB");
        assert_eq!(json_string("a\"b\\\n"), "\"a\\\"b\\\\\\u000a\"");
        let mut report = Report::new();
        report.responses = 10;
        report.elapsed = Duration::from_secs(2);
        report.latency.record(100).unwrap();
        let json = report.json("http://x/", 1, 1);
        assert!(
            json.contains("\"requests\":10,\"requests_per_s\":5.0"),
            "{json}"
        );
        assert!(json.contains("\"p50\":100"), "{json}");
    }
}
