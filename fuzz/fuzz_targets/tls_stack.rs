//! The TLS-plus-HTTP stack in memory: a rustls client and the server's `TlsConn` (rustls under
//! `http::Conn`), joined by byte queues cut into arbitrary pieces. The client sends arbitrary
//! bytes as its plaintext (usually not HTTP: that is the point). Checked, as for the `conn`
//! target, beyond "no panic":
//! - what the client decrypts is a sequence of well-formed HTTP/1.1 responses;
//! - responses leave in the order the handler was called;
//! - nothing follows a response that says `Connection: close`;
//! - the same plaintext cut differently on the wire gives the same responses;
//! - a client that ends with a close_notify (one input in two) gets its connection closed:
//!   the close_notify is the end of the HTTP connection's input, as a FIN is.
//!
//! A second run feeds the same bytes to the server as raw ciphertext (garbage for TLS), cut the
//! same way: it must end the connection without a panic, and bytes that start with a letter (a
//! plain HTTP request to the TLS port) get a 400, its head alone if they start with `HEAD `.
#![no_main]

use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use reactor_httpd::config::Limits;
use reactor_httpd::http::Want;
use reactor_httpd::http::memory::{MemoryEnv, check_responses, numbered, reset_calls};
use reactor_httpd::session::Session;
use reactor_httpd::tls::{TlsConn, TlsSource, server_config};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

struct Keys {
    server: Arc<rustls::ServerConfig>,
    client: Arc<ClientConfig>,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let dir = std::env::temp_dir().join(format!("tls-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        let (server, _) = server_config(&TlsSource::Files { cert, key }, None).unwrap();
        // Read once, held in memory: the files are not needed again.
        let _ = std::fs::remove_dir_all(&dir);
        let mut roots = RootCertStore::empty();
        roots.add(made.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Keys {
            server,
            client: Arc::new(client),
        }
    })
}

/// Runs the stack: `plaintext` from the client, then its close_notify if `notify`, the wire cut
/// in pieces of `sizes` (cycled). Returns what the client decrypted, and whether the server
/// closed the connection.
fn run(plaintext: &[u8], sizes: &[usize], notify: bool) -> (Vec<u8>, bool) {
    reset_calls();
    let keys = keys();
    let mut env = MemoryEnv::new(Limits::default(), &numbered);
    let mut server = TlsConn::open(&keys.server, &mut env.cx());
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(keys.client.clone(), name).unwrap();
    client.writer().write_all(plaintext).unwrap();
    let mut notify = notify;
    let mut to_server: Vec<u8> = Vec::new();
    let mut received = Vec::new();
    let mut cut = sizes.iter().cycle();
    let mut closed = false;
    for _ in 0..10_000 {
        let mut moved = false;
        // Once the handshake is through (and with it the plaintext, which waited for it): the
        // close_notify, if this client ends with one.
        if notify && !client.is_handshaking() {
            client.send_close_notify();
            notify = false;
        }
        // Client to server.
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        // Server: do what it wants until it needs bytes it does not have.
        loop {
            let mut cx = env.cx();
            match server.want(&mut cx) {
                Want::Read => {
                    if to_server.is_empty() {
                        break;
                    }
                    let buf = server.read_buf(&mut cx);
                    let n = (*cut.next().unwrap()).min(buf.len()).min(to_server.len());
                    buf[..n].copy_from_slice(&to_server[..n]);
                    to_server.drain(..n);
                    server.received(n);
                    moved = true;
                }
                Want::Write { bytes, .. } => {
                    let n = (*cut.next().unwrap()).min(bytes.len());
                    let mut piece = &bytes[..n];
                    // The client takes what it can; what it does not take stays unwritten.
                    let taken = client.read_tls(&mut piece).unwrap_or(0);
                    server.wrote(taken);
                    if client.process_new_packets().is_err() {
                        // The client gives up (as rustls's does on a handshake message after
                        // its own close_notify) and closes its socket.
                        let closed = closes_at_eof(&mut server, &mut env, &[], &[1]).is_some();
                        return (received, closed);
                    }
                    moved |= taken > 0;
                    if taken == 0 {
                        break;
                    }
                }
                Want::SendFile { .. } => unreachable!("TlsConn sends files itself"),
                // Half-closed, the server goes on reading until the client's end.
                Want::HalfClose => {}
                Want::Wait => break,
                Want::Close => {
                    closed = true;
                    break;
                }
            }
        }
        let mut chunk = [0; 4096];
        loop {
            match client.reader().read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    received.extend_from_slice(&chunk[..n]);
                    moved = true;
                }
            }
        }
        if closed || (!moved && !client.wants_write()) {
            break;
        }
    }
    (received, closed)
}

/// The client's socket delivers `offered` in pieces of `sizes` (nothing more from a client that
/// gave up; raw bytes in place of TLS for the second check) and then ends, and all the server
/// writes is taken: what it wrote, if it then closed the connection, as it must.
fn closes_at_eof(
    server: &mut TlsConn,
    env: &mut MemoryEnv,
    mut offered: &[u8],
    sizes: &[usize],
) -> Option<Vec<u8>> {
    let mut cut = sizes.iter().cycle();
    let mut written = Vec::new();
    for _ in 0..10_000 {
        let mut cx = env.cx();
        match server.want(&mut cx) {
            Want::Read if offered.is_empty() => server.received(0),
            Want::Read => {
                let buf = server.read_buf(&mut cx);
                let n = buf.len().min(offered.len()).min(*cut.next().unwrap());
                buf[..n].copy_from_slice(&offered[..n]);
                offered = &offered[n..];
                server.received(n);
            }
            Want::Write { bytes, .. } => {
                written.extend_from_slice(bytes);
                let n = bytes.len();
                server.wrote(n);
            }
            Want::SendFile { .. } => unreachable!("TlsConn sends files itself"),
            Want::HalfClose | Want::Wait => {}
            Want::Close => return Some(written),
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (split, input) = data.split_at(3);
    let sizes: Vec<usize> = split.iter().map(|&b| usize::from(b) + 1).collect();

    let notify = data[0] & 0x80 != 0;
    let (whole, closed) = run(input, &[1 << 20], notify);
    let (cut, cut_closed) = run(input, &sizes, notify);
    assert_eq!(whole, cut, "cut {sizes:?}");
    assert_eq!(closed, cut_closed, "cut {sizes:?}");
    assert!(closed || !notify, "a close_notify left the connection open");

    check_responses(&whole);

    // The same bytes as ciphertext: garbage to TLS, or a plain HTTP request to the TLS port.
    let mut env = MemoryEnv::new(Limits::default(), &numbered);
    let mut server = TlsConn::open(&keys().server, &mut env.cx());
    let written = closes_at_eof(&mut server, &mut env, input, &sizes)
        .expect("the server neither closed nor stopped asking");
    if input.first().is_some_and(u8::is_ascii_uppercase) {
        let text = String::from_utf8_lossy(&written);
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
        let head = input.starts_with(b"HEAD ");
        assert_eq!(
            written.ends_with(b"\r\n\r\n"),
            head,
            "cut {sizes:?}: {text}"
        );
    }
});
