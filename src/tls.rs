//! HTTPS: rustls stacked under the HTTP state machine, both sans-I/O.
//!
//! ```text
//!   driver (socket)  ──ciphertext──▶  TlsConn ──plaintext──▶  http::Conn
//!                    ◀─ciphertext───  (rustls) ◀─plaintext───
//! ```
//!
//! [`TlsConn`] is a [`Session`] like `http::Conn`: the driver asks it what it wants and moves
//! bytes, and never learns that there are two state machines. Inside, each `want` first sends
//! the ciphertext waiting, then steps rustls's state machine (its unbuffered API: the buffers
//! are ours, lent by the loop's pool, so an idle connection holds none) until it has records to
//! send, needs more ciphertext, or lets the HTTP connection speak. Then it asks the HTTP
//! connection what *it* wants and answers: its `Read` is fed decrypted bytes (and becomes the
//! driver's `Read` of ciphertext when there are none), its `Write` is encrypted, its `SendFile`
//! is read from the file in bounded pieces and encrypted (no sendfile through a userspace TLS
//! stack), its `HalfClose` and `Close` send a close_notify first. The client's close_notify is
//! the end of the HTTP connection's input, as a FIN is without TLS: what it asked before is
//! answered, then the connection closes. `http/` knows nothing of any of this.
//!
//! A plain HTTP request sent to the TLS port is answered with a short plain-text 400 saying so
//! (a HEAD with the head alone), then closed, as nginx does. A connection whose TLS fails
//! (garbage, a bad record, a handshake rustls refuses) gets rustls's alert and is closed; both
//! are logged as 400 with no request.

use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, EncodeTlsData, EncryptError, WriteTraffic};

use crate::config::Limits;
use crate::http::{
    Clock, Conn, Context, Drain, LINGER_TIMEOUT, Millis, Persistence, Response, Status, Want,
    write_head,
};
use crate::metrics::Timeout;
use crate::session::Session;

/// Where the certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// `--tls-cert` and `--tls-key`: PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// `--tls-self-signed`: made at start for localhost, 127.0.0.1 and ::1.
    SelfSigned,
}

/// A file body goes through TLS in pieces of this size: read, encrypt, send, read the next.
const FILE_PIECE: usize = 16 * 1024;

/// The most plaintext encrypted at a time: one record.
const WRITE_PIECE: usize = 16 * 1024;

/// Pieces of a response are encrypted, one record each, until this much ciphertext waits to
/// be sent: two records to a write. The most a connection holds for a response is below this
/// and one record more.
const WRITE_BATCH: usize = 24 * 1024;

/// The most ciphertext held while a record or a handshake message is incomplete: rustls takes
/// handshake messages of up to 64 KiB, and a record's ciphertext is at most 18,437 bytes.
const INPUT_MAX: usize = 84 * 1024;

/// What a plain HTTP request to the TLS port gets: a 400 whose body says why.
const PLAIN_HTTP_REFUSAL: &str = "This port speaks HTTPS: ask for https://, not http://\n";

/// The refusal of a plain HTTP request, head as every other response's, `--header` fields
/// (`always`) included but `Strict-Transport-Security`, which a response over plain HTTP must
/// not carry (RFC 6797 7.2); to a HEAD, its head alone (RFC 9110 9.3.2).
fn plain_http_refusal(clock: &Clock, always: &[(String, String)], head: bool) -> Vec<u8> {
    let always: Vec<_> = always
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("strict-transport-security"))
        .cloned()
        .collect();
    let body = PLAIN_HTTP_REFUSAL.as_bytes();
    let mut out = Vec::with_capacity(256 + body.len());
    let response = Response::text(Status::BAD_REQUEST, PLAIN_HTTP_REFUSAL);
    let length = body.len() as u64;
    write_head(
        &mut out,
        &response,
        length,
        Persistence::Close,
        clock,
        &always,
    );
    if !head {
        out.extend_from_slice(body);
    }
    out
}

/// Reads on into the method of a plain HTTP request, `matched` bytes of `HEAD ` already seen:
/// the refusal once the method is known, or still `Sniffing` while all of `bytes` could be the
/// start of a HEAD.
fn sniff_method(mut matched: u8, bytes: &[u8]) -> State {
    const HEAD: &[u8] = b"HEAD ";
    for &byte in bytes {
        if byte != HEAD[usize::from(matched)] {
            return State::Refusing {
                head: false,
                half_closed: false,
            };
        }
        matched += 1;
        if usize::from(matched) == HEAD.len() {
            return State::Refusing {
                head: true,
                half_closed: false,
            };
        }
    }
    State::Sniffing { matched }
}

/// A certificate made with `--tls-self-signed` and its private key (PKCS#8), both DER. An
/// upgrade hands it to the new process (see `server/upgrade.rs`), so that a SIGHUP does not
/// change the certificate that clients were told to trust. (No `Debug`: it holds a key.)
#[derive(Clone)]
pub struct SelfSigned {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    /// When it was made, in seconds since the Unix epoch.
    pub made: u64,
}

impl SelfSigned {
    /// Whether it is still good enough to keep serving at `now`: valid for [`RENEW_BEFORE`]
    /// more at least. An upgrade after that makes a new one.
    fn fresh(&self, now: SystemTime) -> bool {
        let expires = UNIX_EPOCH + Duration::from_secs(self.made) + VALID_FOR;
        expires
            .duration_since(now)
            .is_ok_and(|left| left >= RENEW_BEFORE)
    }

    /// `AB:CD:...`, the SHA-256 of the certificate, as browsers and `openssl x509
    /// -fingerprint` show it.
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.cert);
        let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        hex.join(":")
    }
}

/// The server's TLS configuration, from PEM files or self-signed; for a self-signed one, the
/// certificate it serves: the one `inherited` from the process this one took over from, else
/// one made now. An error is one line for stderr.
pub fn server_config(
    source: &TlsSource,
    inherited: Option<SelfSigned>,
) -> Result<(Arc<ServerConfig>, Option<SelfSigned>), String> {
    let (chain, key, made) = match source {
        TlsSource::Files { cert, key } => (read_chain(cert)?, read_key(key)?, None),
        TlsSource::SelfSigned => {
            let now = SystemTime::now();
            let made = match inherited {
                Some(made) if made.fresh(now) => made,
                _ => self_signed(now)
                    .map_err(|err| format!("cannot make a self-signed certificate: {err}"))?,
            };
            let cert = CertificateDer::from(made.cert.clone());
            let key = PrivateKeyDer::Pkcs8(made.key.clone().into());
            (vec![cert], key, Some(made))
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| format!("TLS: {err}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| match source {
            TlsSource::Files { cert, key } => format!(
                "--tls-cert {} and --tls-key {} do not make a usable pair: {err}",
                cert.display(),
                key.display()
            ),
            TlsSource::SelfSigned => format!("TLS: {err}"),
        })?;
    // The versions we speak, ours first (rustls picks by the server's order). A client that
    // offers only `http/1.0` (`curl --http1.0`) gets it, as from nginx: offered nothing it
    // knows, rustls ends the handshake (RFC 7301 3.2).
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    // Session resumption: stateless tickets (TLS 1.3 and 1.2), and the default in-memory cache
    // of session ids for TLS 1.2 clients without tickets.
    config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|err| format!("TLS: {err}"))?;
    Ok((Arc::new(config), made))
}

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a self-signed certificate is valid after it is made (from a day before).
const VALID_FOR: Duration = DAY.saturating_mul(364);
/// An upgrade keeps the self-signed certificate while it has this long left, and makes a new
/// one after.
const RENEW_BEFORE: Duration = DAY.saturating_mul(30);

/// A certificate for localhost, 127.0.0.1 and ::1, made at `now`, and its key.
///
/// It is valid from a day before `now` (for a client whose clock is behind) for 365 days in
/// all, as a certificate a browser is asked to trust must be: Apple's platforms refuse server
/// certificates valid for longer than 825 days even when the user trusts them, and Mozilla's
/// guidance is at most 366. (rcgen's default runs from 1975 to 4096.) An upgrade (SIGHUP)
/// keeps it while it has 30 days left, and makes a new one after; a server that runs a year
/// without a restart or an upgrade should use `--tls-cert`. It names itself, and carries what
/// strict verifiers look for: key usage for signatures, extended key usage for a TLS server,
/// and an authority key identifier.
fn self_signed(now: SystemTime) -> Result<SelfSigned, rcgen::Error> {
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    let mut params = rcgen::CertificateParams::new(names)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "reactor-httpd self-signed");
    params.not_before = (now - DAY).into();
    params.not_after = (now + VALID_FOR).into();
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(SelfSigned {
        cert: cert.der().to_vec(),
        key: key.serialize_der(),
        made: now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs()),
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let unreadable = |err: &dyn std::fmt::Display| format!("--tls-cert {}: {err}", path.display());
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|err| unreadable(&err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| unreadable(&err))?;
    if chain.is_empty() {
        return Err(unreadable(&"no certificate in it (PEM expected)"));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    // PKCS#8, PKCS#1 (RSA) or SEC1 (EC), whichever the file holds.
    PrivateKeyDer::from_pem_file(path).map_err(|err| format!("--tls-key {}: {err}", path.display()))
}

// ANCHOR: tls_conn
/// A connection with TLS: rustls's state machine under the HTTP one, through rustls's
/// unbuffered API, in which every buffer is the caller's. Each is lent by the loop's pool while
/// it holds bytes, so an idle connection holds none: only rustls's session state and the HTTP
/// connection's.
pub struct TlsConn {
    tls: UnbufferedServerConnection,
    inner: Conn,
    /// Ciphertext for the socket.
    out: Outgoing,
    /// Ciphertext from the socket: `input[..filled]` is what rustls has not taken yet (a record,
    /// or a handshake message, not yet whole).
    input: Box<[u8]>,
    filled: usize,
    /// Decrypted bytes: `plain[taken..]` is what the HTTP connection has not taken yet.
    plain: Vec<u8>,
    taken: usize,
    state: State,
    /// The client's close_notify has come: its side of the conversation is over.
    peer_closed: bool,
    /// The client closed its side of the socket.
    eof: bool,
    /// The HTTP connection asked for a half-close: it goes to the driver once the close_notify
    /// before it is sent.
    half_close: bool,
    /// A close_notify is queued.
    notified: bool,
    /// Something to log once a context is at hand (a refusal or a TLS failure).
    to_log: bool,
    /// A refused connection lingers until then, reading what the client still sends.
    linger_until: Option<Millis>,
    /// While ciphertext waits for the socket: `--send-timeout` after the socket last took some.
    /// The HTTP connection's send timer stops once it has handed the last of its output over
    /// (it may be closed by then, its close_notify queued), so this one bounds what is left
    /// for a client that stopped reading, as a plain connection's bounds its own output.
    /// Cleared whenever the socket takes some, and set anew at the next `want`.
    send_by: Option<Millis>,
    /// The server's drain, held back while the HTTP connection is idle and this one holds the
    /// start of a record (see [`TlsConn::pass_drain`]).
    drain: Option<Drain>,
}
// ANCHOR_END: tls_conn

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing received yet: the first byte tells TLS from plain HTTP.
    Fresh,
    Open,
    /// Plain HTTP on the TLS port, its method not yet known (`matched` bytes of `HEAD `).
    Sniffing {
        matched: u8,
    },
    /// Plain HTTP on the TLS port: the 400 goes out (to a HEAD, without its body), then the
    /// connection lingers and closes.
    Refusing {
        head: bool,
        half_closed: bool,
    },
    /// rustls gave up: its alert goes out, then the connection closes.
    Failed,
    Done,
}

/// What a step of rustls's state machine leaves to do.
enum Next {
    /// Take the next step.
    Step,
    /// Records were encoded for the socket: take the next step before sending them, so that a
    /// whole flight goes out in one write.
    Encoded,
    /// rustls needs more ciphertext.
    Read,
    /// The HTTP connection waits for the handler pool.
    Wait,
    /// Both sides have said close_notify, or the HTTP connection is done after its own.
    Done,
    /// rustls refused what came, or could not go on.
    Fail,
}

impl TlsConn {
    fn new(config: &Arc<ServerConfig>, inner: Conn) -> TlsConn {
        let tls = UnbufferedServerConnection::new(config.clone())
            .expect("a server configuration rustls built accepts connections");
        TlsConn {
            tls,
            inner,
            out: Outgoing::default(),
            input: Box::default(),
            filled: 0,
            plain: Vec::new(),
            taken: 0,
            state: State::Fresh,
            peer_closed: false,
            eof: false,
            half_close: false,
            notified: false,
            to_log: false,
            linger_until: None,
            send_by: None,
            drain: None,
        }
    }

    // ANCHOR: tls_step
    /// One step of rustls's state machine over the ciphertext held, and what it asks for: its
    /// records encoded for the socket, the plaintext it decrypted set aside for the HTTP
    /// connection, and, once the handshake is done and nothing else waits, what the HTTP
    /// connection wants, encrypted.
    fn step(&mut self, cx: &mut Context<'_>) -> Next {
        // Records may be written now: into a buffer of the pool's (given back by `release`).
        if self.out.buf.capacity() == 0 {
            self.out.buf = cx.pool.take_output();
        }
        let TlsConn {
            tls,
            inner,
            out,
            input,
            filled,
            plain,
            taken,
            peer_closed,
            eof,
            half_close,
            notified,
            ..
        } = self;
        // TLS 1.3 lets the server send once its own flight is out, before the client's
        // Finished; the HTTP connection is asked nothing until the handshake is done. (Read
        // before this step: a step that finishes the handshake has used up the input, so
        // asking for more is right.)
        let handshaking = tls.is_handshaking();
        let status = tls.process_tls_records(&mut input[..*filled]);
        let mut discard = status.discard;
        let next = match status.state {
            Err(_) => Next::Fail,
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                encode(&mut data, out);
                Next::Encoded
            }
            // Sent before anything else: the flight, then the next step.
            Ok(ConnectionState::TransmitTlsData(data)) => {
                if out.pending().is_empty() {
                    data.done();
                }
                Next::Step
            }
            Ok(ConnectionState::BlockedHandshake) if *eof => Next::Done,
            Ok(ConnectionState::BlockedHandshake) => Next::Read,
            Ok(ConnectionState::ReadTraffic(mut records)) => {
                let mut next = Next::Step;
                while let Some(record) = records.next_record() {
                    let Ok(record) = record else {
                        next = Next::Fail;
                        break;
                    };
                    discard += record.discard;
                    if plain.capacity() == 0 {
                        *plain = cx.pool.take_output();
                    }
                    plain.extend_from_slice(record.payload);
                }
                next
            }
            // Early data is off (`max_early_data_size` is 0), so none is ever accepted.
            Ok(ConnectionState::ReadEarlyData(_)) => Next::Fail,
            // The client's close_notify: the end of the HTTP connection's input, as a FIN is.
            Ok(ConnectionState::PeerClosed) => {
                *peer_closed = true;
                Next::Step
            }
            Ok(ConnectionState::Closed) => Next::Done,
            Ok(ConnectionState::WriteTraffic(_)) if handshaking && *eof => Next::Done,
            Ok(ConnectionState::WriteTraffic(_)) if handshaking => Next::Read,
            Ok(ConnectionState::WriteTraffic(mut traffic)) => match inner.want(cx) {
                Want::Read if *taken < plain.len() => {
                    let buf = inner.read_buf(cx);
                    let n = buf.len().min(plain.len() - *taken);
                    if n == 0 {
                        // Cannot happen (`Read` means room), and 0 would tell the HTTP
                        // connection that its input ended.
                        Next::Fail
                    } else {
                        buf[..n].copy_from_slice(&plain[*taken..*taken + n]);
                        *taken += n;
                        inner.received(n);
                        Next::Step
                    }
                }
                // The end of the client's input: its close_notify, or the socket's end
                // without one.
                Want::Read if *peer_closed || *eof => {
                    inner.received(0);
                    Next::Step
                }
                Want::Read => Next::Read,
                Want::Write { bytes, .. } => {
                    let n = bytes.len().min(WRITE_PIECE);
                    if encrypt(&mut traffic, &bytes[..n], out) {
                        inner.wrote(n);
                        out.more_or_send()
                    } else {
                        Next::Fail
                    }
                }
                Want::SendFile { file, offset, len } => {
                    match send_piece(&mut traffic, file, offset, len, out) {
                        Ok(n) => inner.sent_file(n),
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                        // The file could not be read: the response cannot be completed.
                        Err(_) => inner.sent_file(0),
                    }
                    out.more_or_send()
                }
                Want::HalfClose => {
                    close_notify(&mut traffic, out);
                    *notified = true;
                    *half_close = true;
                    Next::Step
                }
                Want::Wait => Next::Wait,
                Want::Close if *notified => Next::Done,
                Want::Close => {
                    close_notify(&mut traffic, out);
                    *notified = true;
                    Next::Step
                }
            },
            // A state a later rustls may add, which this code cannot know how to meet.
            Ok(_) => Next::Fail,
        };
        if discard > 0 {
            input.copy_within(discard..*filled, 0);
            *filled -= discard;
        }
        if *taken == plain.len() && !plain.is_empty() {
            plain.clear();
            *taken = 0;
        }
        // A record or a handshake message longer than rustls allows cannot become whole.
        if matches!(next, Next::Read) && *filled >= INPUT_MAX {
            return Next::Fail;
        }
        next
    }
    // ANCHOR_END: tls_step

    /// rustls refused what came: the alerts it queued are encoded for the socket, then the
    /// connection closes. Only while some are queued: a step with none would read the refused
    /// bytes again.
    fn fail_with_alert(&mut self) {
        self.fail();
        while self.tls.wants_write() {
            let status = self.tls.process_tls_records(&mut self.input[..self.filled]);
            let Ok(ConnectionState::EncodeTlsData(mut data)) = status.state else {
                break;
            };
            encode(&mut data, &mut self.out);
        }
    }

    fn fail(&mut self) {
        self.state = State::Failed;
        self.to_log = true;
    }

    /// Closes at once, dropping the ciphertext the socket has not taken.
    fn abandon(&mut self) {
        self.state = State::Done;
        self.out.sent = self.out.queued;
        self.send_by = None;
    }

    /// Input the HTTP connection has not seen: the start of a record (most likely the client
    /// sending a request), or plaintext not yet handed over.
    fn holds_unseen_input(&self) -> bool {
        self.filled > 0 || self.taken < self.plain.len()
    }

    /// Passes the server's drain on to the HTTP connection, except while that connection is
    /// idle and this one holds input it has not seen, or is in a handshake the client has
    /// begun. An idle HTTP connection told to drain closes; without TLS, the bytes the client
    /// had sent by then would be in its input, a request in flight, answered. So the drain
    /// waits until the record is whole and its plaintext handed over (the HTTP connection
    /// counts bytes it holds when the drain comes as a request begun), and a handshake begun
    /// goes on to the request it is for: the client's first bytes came before the drain, as a
    /// request's would. (Passed during the handshake, the drain let it finish and then closed
    /// under the request that came with the client's Finished; or answered it, when the drain
    /// came late enough: it depended on when each mode looked.) Called before every step;
    /// bounded, like any drain, by the drain's deadline.
    fn pass_drain(&mut self) {
        let begun =
            self.holds_unseen_input() || (self.state == State::Open && self.tls.is_handshaking());
        if let Some(how) = self.drain
            && !(self.inner.is_idle() && begun)
        {
            self.drain = None;
            self.inner.drain(how);
        }
    }

    /// Once a context is at hand: logs a refusal or a TLS failure, and queues the refusal's
    /// answer. A TLS failure sends no HTTP at all; a refusal's body is its text.
    fn refusal_or_failure(&mut self, cx: &mut Context<'_>) {
        if !self.to_log {
            return;
        }
        self.to_log = false;
        let mut body = 0;
        if let State::Refusing {
            head,
            half_closed: false,
        } = self.state
        {
            let refusal = plain_http_refusal(cx.clock, cx.heads.always(), head);
            body = if head { 0 } else { PLAIN_HTTP_REFUSAL.len() };
            if let Some(metrics) = cx.metrics {
                metrics.responded(400, false);
                metrics.bytes_sent.add(refusal.len() as u64);
            }
            self.out = Outgoing::holding(refusal);
        }
        if let Some(log) = cx.log.as_deref_mut() {
            log.record(cx.peer, cx.clock, None, 400, body as u64);
        }
    }

    /// Gives idle buffers back to the loop's pool (or frees those that grew).
    fn release(&mut self, cx: &mut Context<'_>) {
        if self.filled == 0 && !self.input.is_empty() {
            cx.pool.give_input(std::mem::take(&mut self.input));
        }
        if self.out.pending().is_empty() && self.out.buf.capacity() > 0 {
            cx.pool.give_output(std::mem::take(&mut self.out).buf);
        }
        if self.plain.is_empty() && self.plain.capacity() > 0 {
            cx.pool.give_output(std::mem::take(&mut self.plain));
        }
    }
}

/// The longest session state a ticket of ours carries, with room to spare: with the longest
/// server name there is (253 bytes), an ALPN protocol (both of ours are 8 bytes) and no client
/// certificate, rustls's state is 325 bytes in TLS 1.3 and 1.2 alike (a ticket of 369, read
/// back with openssl).
const TICKET_STATE_MAX: usize = 512;

impl Session for TlsConn {
    type Setup = Arc<ServerConfig>;

    /// Keeps session tickets good across children. rustls's ticketer makes a new key every six
    /// hours, at its first use after that, and refuses to decrypt a ticket longer than any it
    /// has made itself (a defence against partitioning oracles). A child starts from the
    /// parent's copy of it and makes its tickets in a copy that dies with it: the next child,
    /// whose copy had made none, refused every one, and after six hours each child would have
    /// made a key of its own. So the parent uses the ticketer once before each fork: the key
    /// rolls over here when it is due, for every child after, and the parent's copy has made a
    /// ticket as long as any a child will.
    fn before_fork(config: &Arc<ServerConfig>) {
        let _ = config.ticketer.encrypt(&[0; TICKET_STATE_MAX]);
    }

    fn open(config: &Arc<ServerConfig>, cx: &mut Context<'_>) -> Self {
        TlsConn::new(config, Conn::new(cx))
    }

    fn refuse(config: &Arc<ServerConfig>, status: Status, cx: &mut Context<'_>) -> Self {
        TlsConn::new(config, Conn::refuse(status, cx))
    }

    // ANCHOR: tls_want
    fn want<'a>(&'a mut self, cx: &mut Context<'_>) -> Want<'a> {
        self.refusal_or_failure(cx);
        let mut encoded = false;
        loop {
            // Ciphertext first: nothing else moves while the socket has not taken it.
            if !self.out.pending().is_empty() && !encoded {
                if self.send_by.is_none() {
                    let now = cx.clock.now_ms();
                    self.send_by = Some(now.deadline_after(cx.limits.send_timeout));
                }
                return Want::Write {
                    bytes: self.out.pending(),
                    more: false,
                };
            }
            encoded = false;
            if self.half_close {
                self.half_close = false;
                return Want::HalfClose;
            }
            match self.state {
                State::Done => return Want::Close,
                State::Failed => {
                    self.state = State::Done;
                    return Want::Close;
                }
                State::Refusing {
                    head,
                    half_closed: false,
                } => {
                    self.state = State::Refusing {
                        head,
                        half_closed: true,
                    };
                    self.linger_until = Some(cx.clock.now_ms().deadline_after(LINGER_TIMEOUT));
                    return Want::HalfClose;
                }
                // Lingering: read what the client still sends until it closes.
                State::Refusing { .. } if self.eof => return Want::Close,
                State::Refusing { .. } => {
                    self.release(cx);
                    return Want::Read;
                }
                // The client stopped, or ended, inside what could be `HEAD `.
                State::Sniffing { .. } if self.eof => {
                    self.state = State::Refusing {
                        head: false,
                        half_closed: false,
                    };
                    self.to_log = true;
                    self.refusal_or_failure(cx);
                    continue;
                }
                State::Sniffing { .. } => {
                    self.release(cx);
                    return Want::Read;
                }
                State::Fresh | State::Open => {}
            }
            self.pass_drain();
            match self.step(cx) {
                Next::Step => {}
                Next::Encoded => encoded = true,
                // Records encoded are sent first (the next call asks again).
                Next::Read | Next::Wait if !self.out.pending().is_empty() => {}
                Next::Read => {
                    self.release(cx);
                    return Want::Read;
                }
                Next::Wait => return Want::Wait,
                Next::Done => self.state = State::Done,
                Next::Fail => self.fail_with_alert(),
            }
        }
    }
    // ANCHOR_END: tls_want

    fn read_buf<'a>(&'a mut self, cx: &mut Context<'_>) -> &'a mut [u8] {
        if self.input.is_empty() {
            self.input = cx.pool.take_input();
        }
        if self.filled == self.input.len() {
            // A record or a handshake message longer than the buffer: room for the rest (`want`
            // refuses one that would not fit in `INPUT_MAX`).
            let grown = (self.input.len() * 2).min(INPUT_MAX);
            crate::http::grow_buffer(&mut self.input, grown);
        }
        &mut self.input[self.filled..]
    }

    fn received(&mut self, n: usize) {
        if n == 0 {
            self.eof = true;
            return;
        }
        let bytes = &self.input[self.filled..self.filled + n];
        if self.state == State::Fresh {
            // Every TLS connection starts with a handshake record (type 22). A request line
            // starts with a method, in letters.
            self.state = match bytes[0] {
                0x16 => State::Open,
                b'A'..=b'Z' => State::Sniffing { matched: 0 },
                _ => {
                    self.fail();
                    return;
                }
            };
        }
        if let State::Sniffing { matched } = self.state {
            self.state = sniff_method(matched, bytes);
            self.to_log |= matches!(self.state, State::Refusing { .. });
        }
        // A refusal or a failure: what comes now is discarded (the next read overwrites it).
        if self.state == State::Open {
            self.filled += n;
        }
    }

    fn wrote(&mut self, n: usize) {
        self.out.sent += n;
        if n > 0 {
            self.send_by = None;
        }
    }

    fn sent_file(&mut self, _: u64) {
        // Never asked: file bodies are read and encrypted here (see `step`).
    }

    fn deadline(&self, limits: &Limits) -> Option<Millis> {
        // The handshake counts under the first request's header timeout, which the HTTP
        // connection starts when it is made.
        let own = self.linger_until.or_else(|| self.inner.deadline(limits));
        [own, self.send_by].into_iter().flatten().min()
    }

    fn timed_out(&mut self, cx: &mut Context<'_>) {
        if self.send_by.is_some_and(|by| by <= cx.clock.now_ms()) {
            // The client stopped taking what was sent: give up on it, and on the close_notify
            // that would wait behind it, as a plain connection gives up on its output.
            if let Some(metrics) = cx.metrics {
                metrics.timed_out(Timeout::Send);
            }
            self.abandon();
            return;
        }
        if self.tls.is_handshaking() || !matches!(self.state, State::Open) {
            // Stalled mid-handshake, or lingering after a refusal: just close.
            self.abandon();
            return;
        }
        self.inner.timed_out(cx);
        if self.inner.is_closed() && !self.out.pending().is_empty() {
            // It gave up on a client that stopped reading (a send or keep-alive timeout): the
            // ciphertext that client has not taken goes too.
            self.abandon();
        }
    }

    fn drain(&mut self, how: Drain) {
        // Nothing has come on it yet (a browser's preconnection, say): no request is in flight,
        // so a stop closes it at once, as it closes an idle connection, rather than wait the
        // drain time for a handshake. (A handover gives it the wait an idle connection gets.)
        if how == Drain::Now && self.state == State::Fresh {
            self.state = State::Done;
            return;
        }
        self.drain = Some(how);
        self.pass_drain();
    }

    /// Idle as an HTTP connection is, and not in a handshake, except one that has not begun:
    /// a connection on which nothing has come is as idle as one between requests (a stop
    /// closes it; blocking drivers wake it for that).
    fn is_idle(&self) -> bool {
        self.inner.is_idle()
            && !self.holds_unseen_input()
            && self.out.pending().is_empty()
            && (self.state == State::Fresh || !self.tls.is_handshaking())
    }

    fn is_pending(&self) -> bool {
        self.inner.is_pending()
    }

    fn completed(&mut self, response: Response, cx: &mut Context<'_>) {
        self.inner.completed(response, cx);
    }

    fn closed(&mut self, cx: &mut Context<'_>) {
        self.inner.closed(cx);
    }

    fn cut_off(&mut self, cx: &mut Context<'_>) {
        self.inner.cut_off(cx);
    }
}

/// Ciphertext for the socket: `buf[sent..queued]` is still to go, and `buf[queued..]` is room
/// for more, zeroed once (rustls writes into a slice) and reused.
#[derive(Default)]
struct Outgoing {
    buf: Vec<u8>,
    sent: usize,
    queued: usize,
}

impl Outgoing {
    /// Holds `bytes`, to be sent.
    fn holding(bytes: Vec<u8>) -> Outgoing {
        Outgoing {
            queued: bytes.len(),
            buf: bytes,
            sent: 0,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.sent..self.queued]
    }

    /// Room for `len` more bytes after those queued (emptied first if all were sent).
    fn room(&mut self, len: usize) -> &mut [u8] {
        if self.sent == self.queued {
            (self.sent, self.queued) = (0, 0);
        }
        if self.buf.len() < self.queued + len {
            self.buf.resize(self.queued + len, 0);
        }
        &mut self.buf[self.queued..]
    }

    /// Lets rustls write into the room after what is queued: `want` bytes at first, then as
    /// many as it says it needs (`write` fails with `Some` of that). False if it cannot write.
    fn append(
        &mut self,
        mut want: usize,
        mut write: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
    ) -> bool {
        loop {
            match write(self.room(want)) {
                Ok(n) => {
                    self.queued += n;
                    return true;
                }
                Err(Some(needed)) => want = needed,
                Err(None) => return false,
            }
        }
    }

    /// After a piece of a response was encrypted: another piece joins it while less than
    /// [`WRITE_BATCH`] waits, so the socket takes two records at a time.
    fn more_or_send(&self) -> Next {
        if self.queued - self.sent < WRITE_BATCH {
            Next::Encoded
        } else {
            Next::Step
        }
    }
}

/// Appends the record rustls has ready to `out`.
fn encode(data: &mut EncodeTlsData<'_, ServerConnectionData>, out: &mut Outgoing) {
    // Already encoded (the only other error) cannot happen: each is encoded once.
    out.append(1024, |room| {
        data.encode(room).map_err(|err| match err {
            EncodeError::InsufficientSize(short) => Some(short.required_size),
            _ => None,
        })
    });
}

/// Encrypts `plaintext` into records appended to `out`; false if rustls cannot (it has used up
/// its keys' sequence numbers).
fn encrypt(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    plaintext: &[u8],
    out: &mut Outgoing,
) -> bool {
    // A record's header, its content type and its tag, and a key update that may go first.
    out.append(plaintext.len() + 256, |room| {
        traffic.encrypt(plaintext, room).map_err(room_needed)
    })
}

/// Appends a close_notify alert to `out`.
fn close_notify(traffic: &mut WriteTraffic<'_, ServerConnectionData>, out: &mut Outgoing) {
    out.append(64, |room| {
        traffic.queue_close_notify(room).map_err(room_needed)
    });
}

/// The room rustls asked for, if that is why it wrote nothing.
fn room_needed(err: EncryptError) -> Option<usize> {
    match err {
        EncryptError::InsufficientSize(short) => Some(short.required_size),
        _ => None,
    }
}

/// Reads the next piece of a file body and encrypts it into `out`; returns how many bytes of
/// the file it took (0: the file ended early, it shrank).
fn send_piece(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    file: &File,
    offset: u64,
    len: u64,
    out: &mut Outgoing,
) -> io::Result<u64> {
    let mut piece = MaybeUninit::<[u8; FILE_PIECE]>::uninit();
    let want = (len as usize).min(FILE_PIECE);
    let Ok(at) = libc::off_t::try_from(offset) else {
        return Ok(0);
    };
    // Not zeroed first: pread fills what it reports, and only that is looked at. (Zeroing it
    // cost about 5% of the server's CPU per 1 MiB download over TLS, in paired rounds.)
    // SAFETY: pread writes at most `want` bytes, within the piece, and returns how many.
    let read = unsafe { libc::pread(file.as_raw_fd(), piece.as_mut_ptr().cast(), want, at) };
    if read < 0 {
        return Err(io::Error::last_os_error());
    }
    let read = read as usize;
    // SAFETY: pread initialized the first `read` bytes of the piece.
    let plaintext = unsafe { std::slice::from_raw_parts(piece.as_ptr().cast::<u8>(), read) };
    if read == 0 || !encrypt(traffic, plaintext, out) {
        return Ok(0);
    }
    Ok(read as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    /// The self-signed certificate verifies (for a client that trusts it) from a day before it
    /// was made until 364 days after, under each of its three names, and at no other time.
    #[test]
    fn a_self_signed_certificate_is_valid_for_a_year() {
        const MINUTE: Duration = Duration::from_secs(60);
        let made = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let der = CertificateDer::from(self_signed(made).unwrap().cert);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let verifies = |name: &str, at: SystemTime| {
            let since = at.duration_since(UNIX_EPOCH).unwrap();
            let name = ServerName::try_from(name.to_string()).unwrap();
            let at = UnixTime::since_unix_epoch(since);
            verifier
                .verify_server_cert(&der, &[], &name, &[], at)
                .is_ok()
        };
        for name in ["localhost", "127.0.0.1", "::1"] {
            assert!(verifies(name, made), "{name}");
        }
        assert!(!verifies("example.com", made));
        assert!(verifies("localhost", made - DAY + MINUTE));
        assert!(verifies("localhost", made + 364 * DAY - MINUTE));
        assert!(!verifies("localhost", made - DAY - MINUTE));
        assert!(!verifies("localhost", made + 364 * DAY + MINUTE));
    }

    /// An upgrade keeps the certificate while it has 30 days left, and not after.
    #[test]
    fn a_self_signed_certificate_is_renewed_30_days_before_it_expires() {
        let made = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let certificate = self_signed(made).unwrap();
        assert!(certificate.fresh(made));
        assert!(certificate.fresh(made + 334 * DAY));
        assert!(!certificate.fresh(made + 334 * DAY + Duration::from_secs(1)));
        assert!(!certificate.fresh(made + 400 * DAY));
    }

    /// A response whose client stops reading once the HTTP connection has handed its last
    /// bytes over (`Connection: close`: it is done, a close_notify queued behind them): the
    /// ciphertext waiting for the socket has a deadline of its own, `--send-timeout` after the
    /// socket last took some, and when it passes the connection closes, dropping it. (Before,
    /// nothing bounded that wait: the connection stayed until the client read or the server
    /// stopped.)
    #[test]
    fn ciphertext_the_client_does_not_take_is_given_up_on() {
        use crate::http::memory::MemoryEnv;
        use rustls::{ClientConfig, ClientConnection, RootCertStore};
        use std::io::Write;
        let (config, made) = server_config(&TlsSource::SelfSigned, None).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from(made.unwrap().cert)).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = ClientConnection::new(Arc::new(client_config), name).unwrap();
        let request = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        client.writer().write_all(request).unwrap();
        let limits = Limits {
            send_timeout: Duration::from_secs(3),
            ..Limits::default()
        };
        let mut env = MemoryEnv::new(limits, &|_| Response::text(Status::OK, "x".repeat(1000)));
        let mut server = TlsConn::open(&config, &mut env.cx());
        // The handshake and the request, until the response is the server's to send: then the
        // socket takes nothing more.
        let mut stuck = false;
        for _ in 0..100 {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).unwrap();
            }
            let mut cx = env.cx();
            let to_client = match server.want(&mut cx) {
                Want::Read => None,
                Want::Write { bytes, .. } => Some(bytes.to_vec()),
                other => panic!("{other:?}"),
            };
            match to_client {
                None => {
                    assert!(!to_server.is_empty(), "the server waits for nothing");
                    let buf = server.read_buf(&mut cx);
                    buf[..to_server.len()].copy_from_slice(&to_server);
                    server.received(to_server.len());
                }
                // The response is encrypted, its close_notify behind it: the socket is full.
                Some(_) if server.notified => {
                    stuck = true;
                    break;
                }
                Some(bytes) => {
                    let n = client.read_tls(&mut &bytes[..]).unwrap();
                    server.wrote(n);
                    client.process_new_packets().unwrap();
                }
            }
        }
        assert!(
            stuck,
            "the response and its close_notify never waited together"
        );
        let deadline = server
            .deadline(&env.limits)
            .expect("a deadline for the ciphertext");
        let now = env.clock.now_ms();
        assert_eq!(deadline, now.deadline_after(Duration::from_secs(3)));
        env.clock = crate::http::Clock::at(deadline.instant(), SystemTime::now());
        server.timed_out(&mut env.cx());
        assert!(matches!(server.want(&mut env.cx()), Want::Close));
    }

    /// Bytes sent to the TLS port in pieces of `piece` bytes, then the client's end: all the
    /// server wrote before it closed.
    fn answer_to(request: &[u8], piece: usize) -> Vec<u8> {
        use crate::http::memory::MemoryEnv;
        static CONFIG: std::sync::OnceLock<Arc<ServerConfig>> = std::sync::OnceLock::new();
        let config = CONFIG.get_or_init(|| server_config(&TlsSource::SelfSigned, None).unwrap().0);
        let mut env = MemoryEnv::new(Limits::default(), &|_| Response::text(Status::OK, "unused"));
        let mut conn = TlsConn::open(config, &mut env.cx());
        let (mut input, mut out) = (request.chunks(piece), Vec::new());
        for _ in 0..10_000 {
            let mut cx = env.cx();
            match conn.want(&mut cx) {
                Want::Read => {
                    let bytes = input.next().unwrap_or_default();
                    conn.read_buf(&mut cx)[..bytes.len()].copy_from_slice(bytes);
                    conn.received(bytes.len());
                }
                Want::Write { bytes, .. } => {
                    out.extend_from_slice(bytes);
                    let n = bytes.len();
                    conn.wrote(n);
                }
                Want::HalfClose => {}
                Want::Close => return out,
                other => panic!("{other:?}"),
            }
        }
        panic!("no end: {}", String::from_utf8_lossy(&out))
    }

    /// A HEAD gets the refusal's head alone, however its method was split; any other method, or
    /// a start of `HEAD ` that the client ends, gets the text too.
    #[test]
    fn plain_http_to_head_is_refused_with_the_head_alone() {
        for (request, head) in [
            (&b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"[..], true),
            (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", false),
            (b"HEADER / HTTP/1.1\r\n", false),
            (b"HEA", false),
            (b"HEAD", false),
            (b"HEAD ", true),
        ] {
            for piece in 1..=request.len() {
                let answer = answer_to(request, piece);
                let text = String::from_utf8_lossy(&answer);
                assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
                assert_eq!(answer.ends_with(b"\r\n\r\n"), head, "{piece}: {text}");
                assert_eq!(text.contains("speaks HTTPS"), !head, "{piece}: {text}");
            }
        }
    }

    /// A record rustls refuses (a handshake record longer than any may be) gets one fatal
    /// alert, however it was split, then the connection closes. rustls must not be asked to
    /// read the refused bytes again: it would queue a second alert (and asserts, in a debug
    /// build, that it does not; the `tls_stack` fuzz target found it).
    #[test]
    fn refused_tls_gets_one_alert() {
        let mut record = vec![0x16, 0xa1, 0xa1, 0xa1, 0xa1];
        record.extend_from_slice(&[0xa1; 16]);
        for piece in 1..=record.len() {
            let answer = answer_to(&record, piece);
            // An alert record: type 21, two bytes, level fatal (2).
            assert_eq!(answer.len(), 7, "{piece}: {answer:?}");
            assert_eq!(
                (answer[0], answer[4], answer[5]),
                (21, 2, 2),
                "{piece}: {answer:?}"
            );
        }
    }
}
