//! What the drivers drive: a sans-I/O connection, plain ([`http::Conn`](crate::http::Conn)) or
//! with TLS under it ([`TlsConn`](crate::tls::TlsConn)).
//!
//! Both speak the same small protocol of `want` / `read_buf` / `received` / `wrote` /
//! `sent_file`, so a driver is written once, generic over the session, and compiled twice: the
//! plain server runs exactly the code it ran before TLS existed, with no branch for it.

use crate::config::Limits;
use crate::http::{Conn, Context, Drain, Millis, Response, Status, Want};

// ANCHOR: session
/// A connection state machine a driver can move bytes for.
pub trait Session: Sized + Send + 'static {
    /// What every new session of a server is made with: nothing for plain HTTP, the TLS
    /// configuration (certificate, key, protocols) for HTTPS.
    type Setup: Clone + Send + Sync + 'static;

    /// A freshly accepted connection.
    fn open(setup: &Self::Setup, cx: &mut Context<'_>) -> Self;
    /// A connection accepted only to be answered `status` and closed (over `--max-connections`).
    fn refuse(setup: &Self::Setup, status: Status, cx: &mut Context<'_>) -> Self;
    /// What the driver should do next.
    fn want<'a>(&'a mut self, cx: &mut Context<'_>) -> Want<'a>;
    /// Room to read into, after [`Want::Read`].
    fn read_buf<'a>(&'a mut self, cx: &mut Context<'_>) -> &'a mut [u8];
    /// `n` bytes were read into the last `read_buf`; 0: the client closed its side.
    fn received(&mut self, n: usize);
    /// `n` bytes of the last [`Want::Write`] were written.
    fn wrote(&mut self, n: usize);
    /// `n` bytes of the last [`Want::SendFile`] were sent.
    fn sent_file(&mut self, n: u64);
    /// When the current timeout expires.
    fn deadline(&self, limits: &Limits) -> Option<Millis>;
    /// The deadline passed.
    fn timed_out(&mut self, cx: &mut Context<'_>);
    /// The server stops or hands over.
    fn drain(&mut self, how: Drain);
    /// Nothing received unanswered, nothing waiting to be sent.
    fn is_idle(&self) -> bool;
    /// A request is away on the driver's handler pool.
    fn is_pending(&self) -> bool;
    /// The pool's response to the request handed over.
    fn completed(&mut self, response: Response, cx: &mut Context<'_>);
    /// The connection is gone (closed, or given up): the last call before it is dropped. What
    /// it still owed the access log (a body made as it was sent, cut short) is written now.
    fn closed(&mut self, cx: &mut Context<'_>);
    /// As [`Session::closed`], when the server's stop ends the connection at the end of its
    /// drain time: a request it cuts off is logged as the server's doing.
    fn cut_off(&mut self, cx: &mut Context<'_>);
    /// Whether the connection will read nothing more: once its queued output is written, it
    /// closes. A driver may stop receiving now (the uring driver cancels its receive with the
    /// last send). `false` when unsure.
    fn reads_no_more(&self) -> bool {
        false
    }
    /// Called by the parent of a process-per-connection server (`--mode fork`) just before
    /// each fork: whatever the sessions' shared state needs done where every later child will
    /// inherit it, rather than in a child whose memory dies with its connection.
    fn before_fork(_setup: &Self::Setup) {}
}
// ANCHOR_END: session

impl Session for Conn {
    type Setup = ();

    #[inline]
    fn open(_: &(), cx: &mut Context<'_>) -> Self {
        Conn::new(cx)
    }

    fn refuse(_: &(), status: Status, cx: &mut Context<'_>) -> Self {
        Conn::refuse(status, cx)
    }

    #[inline]
    fn want<'a>(&'a mut self, cx: &mut Context<'_>) -> Want<'a> {
        Conn::want(self, cx)
    }

    #[inline]
    fn read_buf<'a>(&'a mut self, cx: &mut Context<'_>) -> &'a mut [u8] {
        Conn::read_buf(self, cx)
    }

    #[inline]
    fn received(&mut self, n: usize) {
        Conn::received(self, n)
    }

    #[inline]
    fn wrote(&mut self, n: usize) {
        Conn::wrote(self, n)
    }

    #[inline]
    fn sent_file(&mut self, n: u64) {
        Conn::sent_file(self, n)
    }

    #[inline]
    fn deadline(&self, limits: &Limits) -> Option<Millis> {
        Conn::deadline(self, limits)
    }

    fn timed_out(&mut self, cx: &mut Context<'_>) {
        Conn::timed_out(self, cx)
    }

    fn drain(&mut self, how: Drain) {
        Conn::drain(self, how)
    }

    #[inline]
    fn is_idle(&self) -> bool {
        Conn::is_idle(self)
    }

    fn is_pending(&self) -> bool {
        Conn::is_pending(self)
    }

    fn reads_no_more(&self) -> bool {
        Conn::reads_no_more(self)
    }

    fn completed(&mut self, response: Response, cx: &mut Context<'_>) {
        Conn::completed(self, response, cx)
    }

    fn closed(&mut self, cx: &mut Context<'_>) {
        Conn::closed(self, cx)
    }

    fn cut_off(&mut self, cx: &mut Context<'_>) {
        Conn::cut_off(self, cx)
    }
}
