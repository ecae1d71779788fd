//! reactor-httpd: an HTTP/1.1 server on a hand-rolled, nginx-style reactor.
//!
//! # The layers
//!
//! ```text
//!   main.rs        the command line: flags -> Config, the listening line, signals
//!   config.rs      every limit and timeout, with its default
//!   server/        drivers: move bytes between sockets and a session, keep time
//!   session.rs     what drivers drive: http::Conn, or TLS under it (tls.rs, rustls)
//!   http/          HTTP/1.1 without I/O: bytes in, requests out; responses in, bytes out
//!   app/           handlers: a request in, a response out (demo routes, static files)
//!   access_log.rs  Common Log Format, buffered per loop
//!   metrics.rs     per-loop counters (one writer each; fork mode's shared) and their Prometheus text
//! ```
//!
//! Dependencies point down only: `server/` uses `http/` and `app/`; `app/` uses `http/`'s
//! request and response types; `http/` uses neither, and never touches a socket. That last rule
//! is the design: because the protocol is a pure function of the bytes it is fed, every driver
//! (an event loop, a thread pool, one connection at a time, a process per connection) runs
//! exactly the same HTTP code, and the modes can be compared fairly.
//!
//! # How a request flows through the reactor
//!
//! 1. The kernel spreads new connections across the loops' SO_REUSEPORT listeners
//!    (`server/listener.rs`). A loop accepts until its queue is empty, puts each socket in its
//!    slab of connections, and registers it with mio for READABLE (`server/reactor.rs`).
//! 2. `epoll_wait` (inside `mio::Poll::poll`) reports the socket readable. The loop asks the
//!    connection what it wants (`http::Conn::want`): `Read`. It reads into a buffer lent by the
//!    loop's pool (`http/buf.rs`).
//! 3. Asked again, the connection finds a complete request head (`http/parse.rs`, httparse;
//!    the target and Host checked against RFC 9112 and RFC 3986 by `http/uri.rs`), reads the
//!    body if any (`http/body.rs`), calls the handler (`app/`), and serializes the
//!    response into its output buffer (`http/response.rs`), with the loop's cached `Date`
//!    (`http/date.rs`). It does this for every complete request already read (pipelining), then
//!    says `Write`.
//! 4. The loop writes; if the socket is full it registers WRITABLE and waits. When the output is
//!    gone the connection wants `Read` again; a read that came back short already emptied the
//!    socket, so the loop moves on without the extra read that would only say WouldBlock.
//! 5. An idle connection gives its buffers back to the pool and keeps a keep-alive deadline in
//!    the loop's timer heap (`server/timers.rs`); `poll`'s timeout is the earliest deadline.
//!
//! One read and one write per request, no allocation on the way for `GET /hello`, no lock:
//! each loop owns its connections, buffers, clock and log.

pub mod access_log;
pub mod app;
pub mod config;
pub mod http;
pub mod metrics;
pub mod server;
pub mod session;
pub mod tls;
