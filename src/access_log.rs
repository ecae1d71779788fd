//! The access log: one Common Log Format line per response, buffered per loop.
//!
//! The connection appends a line to its loop's [`AccessLog`] when it queues a response (no I/O);
//! the driver writes the buffer out when [`AccessLog::flush_due`] says so (once a second, or when
//! it is large), and at shutdown. So logging costs a formatted line per request and one write per
//! second, never a write per request.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::AccessLogTarget;
use crate::http::Clock;

/// Flush at least this often while lines are waiting.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Flush early past this many buffered bytes, to bound memory under load.
const FLUSH_BYTES: usize = 64 * 1024;

enum Sink {
    Stdout,
    File(File),
}

pub struct AccessLog {
    sink: Sink,
    buf: Vec<u8>,
    /// When the oldest buffered line must be written by; `None` while the buffer is empty.
    due: Option<Instant>,
}

/// The parts of a request the log shows; `None` when the request line could not be parsed.
pub struct LoggedRequest<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub version: &'a str,
}

impl AccessLog {
    /// Opens the log for one loop; `Ok(None)` when logging is off. Each loop opens the file in
    /// append mode, so whole buffers from different loops never interleave mid-line.
    pub fn open(target: &AccessLogTarget) -> io::Result<Option<AccessLog>> {
        let sink = match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => Sink::Stdout,
            AccessLogTarget::File(path) => {
                Sink::File(OpenOptions::new().create(true).append(true).open(path)?)
            }
        };
        Ok(Some(AccessLog {
            sink,
            buf: Vec::with_capacity(4096),
            due: None,
        }))
    }

    /// Appends one line: `127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] "GET / HTTP/1.1" 200 13`.
    pub fn record(
        &mut self,
        peer: IpAddr,
        clock: &Clock,
        request: Option<LoggedRequest<'_>>,
        status: u16,
        body_bytes: u64,
    ) {
        let buf = &mut self.buf;
        // Writing into a Vec cannot fail.
        let _ = write!(buf, "{peer} - - [");
        buf.extend_from_slice(clock.log_date());
        buf.extend_from_slice(b"] \"");
        match request {
            Some(request) => {
                buf.extend_from_slice(request.method.as_bytes());
                buf.push(b' ');
                escape_into(buf, request.target.as_bytes());
                buf.push(b' ');
                buf.extend_from_slice(request.version.as_bytes());
            }
            None => buf.push(b'-'),
        }
        buf.extend_from_slice(b"\" ");
        buf.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
        buf.push(b' ');
        if body_bytes == 0 {
            buf.push(b'-');
        } else {
            buf.extend_from_slice(itoa::Buffer::new().format(body_bytes).as_bytes());
        }
        buf.push(b'\n');
        if self.due.is_none() {
            self.due = Some(clock.now() + FLUSH_INTERVAL);
        }
        if self.buf.len() >= FLUSH_BYTES {
            self.due = Some(clock.now());
        }
    }

    /// When the buffered lines must be written, if there are any: drivers wake up for it.
    pub fn flush_due(&self) -> Option<Instant> {
        self.due
    }

    /// Writes the buffered lines. A log that cannot be written is not a reason to stop serving:
    /// the lines are dropped and the error reported once per flush.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let result = match &mut self.sink {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(&self.buf).and_then(|()| out.flush())
            }
            Sink::File(file) => file.write_all(&self.buf),
        };
        if let Err(err) = result {
            eprintln!("reactor-httpd: access log: {err}");
        }
        self.buf.clear();
        self.due = None;
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Copies a request target into the log, escaping what could break the line or its quoting.
fn escape_into(buf: &mut Vec<u8>, text: &[u8]) {
    for &byte in text {
        if byte.is_ascii_graphic() && byte != b'"' && byte != b'\\' {
            buf.push(byte);
        } else {
            let _ = write!(buf, "\\x{byte:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn formats_common_log_format_and_escapes() {
        let dir = std::env::temp_dir().join(format!("access-log-{}", std::process::id()));
        let target = AccessLogTarget::File(dir.clone());
        let mut log = AccessLog::open(&target).unwrap().unwrap();
        let clock = Clock::at(Instant::now(), UNIX_EPOCH + Duration::from_secs(784111777));
        let request = LoggedRequest {
            method: "GET",
            target: "/a\"b",
            version: "HTTP/1.1",
        };
        log.record("10.0.0.1".parse().unwrap(), &clock, Some(request), 200, 13);
        log.record("::1".parse().unwrap(), &clock, None, 400, 0);
        assert_eq!(log.flush_due(), Some(clock.now() + FLUSH_INTERVAL));
        log.flush();
        assert_eq!(log.flush_due(), None);
        let text = std::fs::read_to_string(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(
            text,
            "10.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a\\x22b HTTP/1.1\" 200 13\n\
             ::1 - - [06/Nov/1994:08:49:37 +0000] \"-\" 400 -\n"
        );
    }

    #[test]
    fn off_opens_nothing() {
        assert!(AccessLog::open(&AccessLogTarget::Off).unwrap().is_none());
    }
}
